"""Pages people open in a browser (the signing page), as opposed to the REST API."""
