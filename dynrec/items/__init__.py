"""The item flow: from an API body or an import to what every replica's catalogue holds."""
