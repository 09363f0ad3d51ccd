"""FastAPI + uvicorn reference implementation of the benchmarked subset."""
