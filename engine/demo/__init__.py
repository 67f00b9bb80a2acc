"""`make demo`: the whole job on the embedded defaults (`python -m engine.demo`)."""
