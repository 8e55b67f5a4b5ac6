"""fashionstream: the CLI, the one settings object and the wire records that tie the stages."""
