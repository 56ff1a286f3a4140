"""The demo network behind `cds serve --demo`: keys, a registry file and generated catalogs."""
