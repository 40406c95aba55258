"""The config files, installed as ``jaxzoo.configs`` (pyproject.toml maps this folder there).
``jaxzoo.train.configs`` finds and loads them."""
