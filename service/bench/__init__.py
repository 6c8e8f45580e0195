"""Running and measuring compiled models: on the host, under qemu, on a board."""
