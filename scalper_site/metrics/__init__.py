"""``/metrics`` in the Prometheus text format (see the README's "Metrics").

``folder`` prepares prometheus-client's multiprocess folder (settings call it
before the library is imported), ``instruments`` holds the histograms the
trader and the workers record, ``sources`` reads everything else at scrape
time, ``views`` serves it. Nothing is imported here: settings and the trader
import single modules of this package without pulling in the others.
"""
