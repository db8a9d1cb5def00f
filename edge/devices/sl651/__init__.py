"""SL 651-2014 hydrological RTUs (``sl651``). See README.md."""
