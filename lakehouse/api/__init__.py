"""The plan API: HTTP over the plan store (docs/api.md).

`protocol` holds the HTTP rules (errors, ETags, cursors, strict JSON), `auth` the tokens,
`search` the search query, `context` what a server's requests share, `app` the routes and
`server` runs it with uvicorn.
"""
