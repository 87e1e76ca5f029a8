"""What the ViLT-based methods share: loading the backbone, wrapping its linears (``inject``), the per-forward
routing context, the Task-Key Memory and the site that computes its query. Below every method; imports no method."""
