#!/usr/bin/env python3
"""Turn tshark's per-packet ESP NULL heuristic into per-flow verdicts.

usage: tshark-verdicts.py CAPTURE... > verdicts.jsonl

Runs tshark with esp.enable_null_encryption_decode_heuristic on each capture
and writes one JSON line per ESP flow (outer source, destination, SPI), in the
format score_verdicts.py reads: a flow is "null" when the heuristic decoded at
least one of its packets (with the ICV length tshark chose most often, and IV
length 0, as tshark assumes no IV), else "encrypted". This is the most
generous reading of a per-packet heuristic, for comparison with espy.
"""
import collections
import json
import subprocess
import sys


def main(files):
    flows = collections.OrderedDict()
    for name in files:
        out = subprocess.run(
            ["tshark", "-n", "-r", name,
             "-o", "esp.enable_null_encryption_decode_heuristic:TRUE",
             "-Y", "esp", "-T", "fields", "-E", "occurrence=f", "-E", "separator=\t",
             "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
             "-e", "esp.spi", "-e", "esp.pad_len", "-e", "esp.icv"],
            check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split("\t")
            if len(f) < 7 or not f[4]:
                continue
            src, dst = f[0] or f[1], f[2] or f[3]
            key = (src, dst, int(f[4], 16))
            fl = flows.setdefault(key, {"null": 0, "icv": collections.Counter()})
            if f[5] != "":
                fl["null"] += 1
                fl["icv"][len(f[6]) // 2] += 1
    for (src, dst, spi), fl in flows.items():
        v = {"source": {"ip": src}, "destination": {"ip": dst},
             "esp": {"spi": spi, "verdict": "encrypted"}}
        if fl["null"]:
            v["esp"].update(verdict="null", icv_len=fl["icv"].most_common(1)[0][0], iv_len=0)
        print(json.dumps(v))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
