"""The leader's scheduler: placement planners and the loop that proposes their decisions."""
