"""Ray Train and Ray Data jobs that fine-tune dynrec's models and batch-encode the catalogue."""
