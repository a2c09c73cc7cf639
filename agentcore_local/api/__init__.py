"""HTTP <-> backend: the route table, validation against botocore models, responses, event streams."""
