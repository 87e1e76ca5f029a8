"""MoRA (docs/methods.md#mora): ``model`` the method, ``config`` its keys (light: no torch)."""
