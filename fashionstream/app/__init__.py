"""The front end: the `fashionstream` CLI and what only it runs (demo, benches, the local run,
offline track and annotate, the sample catalogue). It wires every layer; nothing imports it."""
