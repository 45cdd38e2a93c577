"""The plugin host: discovery, isolation, registration and lookup of components."""
