"""attention-audit: is a transformer classifier's attention a faithful explanation of its predictions?

The package is split by concept (see STYLE.md): ``records`` holds the shared record types, ``methods``
the explanation methods (one signature, one record), ``faithfulness`` and ``agreement`` the pure metrics,
``storage`` the DuckDB schema, ``report`` the HTML/PDF rendering, and ``steps`` the Prefect tasks.
"""

__version__ = "0.1.0"
