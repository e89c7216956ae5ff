"""The daemon: transport (socket, framing, peer check), RPC methods, and the service they share."""
