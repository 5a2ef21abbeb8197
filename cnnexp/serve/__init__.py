"""`cnnexp serve`: a trained run behind HTTP. `server` binds the port and runs uvicorn (graceful
SIGINT/SIGTERM, workers), `protocol` adds a deadline for slow request headers, `app` holds the FastAPI
routes and request reading, `batcher` stacks concurrent requests into one forward pass, `model` wraps
the restored run (torch is imported only there, in the loading thread, so /health answers 503 at once
while the model loads), `page.html` is the web page."""
