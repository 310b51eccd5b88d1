"""Test helpers shared by every area: service processes, free ports, metrics scrapes."""
