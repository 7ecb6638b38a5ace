"""The HTTP API and web pages: FastAPI over PostgreSQL. Reads and writes the database only;
never talks to the field devices or the broker. ``api.app.create_app`` builds the app,
``api.service.run_api`` serves it."""
