"""Database layer shared by every service: migrations, connections and the site registry."""
