"""The replica: its Raft layer (raft/, a fork of pysyncobj 0.3.17), apply and snapshot hooks (see DESIGN.md)."""
