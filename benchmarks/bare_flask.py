"""The ceiling of POST /api/v1/holds: a bare Flask endpoint doing one INSERT per request, served
by waitress with the settings of `holdshelf serve` (holdshelf/cli/serve.py), on an engine made
as Holdshelf makes its own (holdshelf.storage.database.make_engine: on SQLite WAL, the same
pragmas, writes in BEGIN IMMEDIATE). No token, no checks, no slip: the most a request can do.

Usage: python benchmarks/bare_flask.py DATABASE_URL PORT   (benchmarks/api.py starts it)
"""

from __future__ import annotations

import sys

import waitress
from flask import Flask, jsonify, request
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func, insert

from holdshelf.storage import database

# As holdshelf/cli/serve.py creates its server (threads, proxy headers left to the app).
WAITRESS = {"threads": 8, "ident": "holdshelf", "clear_untrusted_proxy_headers": False}
READY = "bare Flask is serving"

metadata = MetaData()
bare_holds = Table(
    "bench_bare_holds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_barcode", String(64), nullable=False),
    Column("patron_card", String(64), nullable=False),
    Column("created_at", DateTime, server_default=func.now()),
)


def create_app(database_url: str) -> Flask:
    engine = database.make_engine(database_url)
    metadata.create_all(engine)
    app = Flask(__name__)

    @app.post("/api/v1/holds")
    def new_hold():  # one INSERT in one transaction, its id back
        body = request.get_json()
        with engine.begin() as connection:
            row = connection.execute(
                insert(bare_holds).values(
                    item_barcode=body["item_barcode"], patron_card=body["patron_card"]
                )
            )
        return jsonify(id=row.inserted_primary_key[0]), 201

    return app


def main() -> None:
    database_url, port = sys.argv[1], int(sys.argv[2])
    server = waitress.create_server(
        create_app(database_url), host="127.0.0.1", port=port, **WAITRESS
    )
    print(f"{READY} at http://127.0.0.1:{port}/", flush=True)
    server.run()


if __name__ == "__main__":
    main()
