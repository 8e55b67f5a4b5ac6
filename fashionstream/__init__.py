"""fashionstream: the foundation every layer imports (`core/`) and the front end that wires the
layers into the `fashionstream` CLI (`app/`). See ARCHITECTURE.md."""
