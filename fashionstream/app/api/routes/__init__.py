"""One router per resource. A new endpoint group is one module here with a `router`, added to
`ROUTERS` in fashionstream/app/api/app.py."""
