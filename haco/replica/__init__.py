"""The replica: everything that touches pysyncobj (node, Raft plumbing, apply and snapshot hooks)."""
