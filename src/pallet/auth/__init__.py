"""Users, API tokens, roles and the permissions they grant."""
