"""The HTTP API (`fashionstream api`): submit images to the pipeline, tag one synchronously, and
query what the pipeline wrote. `create_app` in app.py builds it; one router per resource in
routes/."""
