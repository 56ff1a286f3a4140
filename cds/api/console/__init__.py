"""The operator console: GET /console and its JSON endpoints under /console/api/ (README "Operator console")."""
