# The Hydra configs (config.yaml and its groups). A package so that Hydra finds them as pkg://distill.conf
# and a built wheel carries them (pyproject.toml: package-data).
