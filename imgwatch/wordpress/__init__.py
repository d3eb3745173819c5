"""WordPress: the REST client, what its answers mean, the uploader and the upload pause."""
