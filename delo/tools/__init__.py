"""Tools around the library, not the library: benchmarks (``bench``), the tiny backbone's pretraining and probe,
the browser check of the dashboards. The core package never imports them."""
