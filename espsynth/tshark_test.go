package espsynth_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/espsynth"
)

// TestTsharkDecodesNullFlows hands a capture of ESP-NULL flows with
// HMAC-SHA1-96 (no IV, 12-byte ICV, what Wireshark's NULL heuristic
// assumes) to tshark, an ESP implementation independent of this package,
// and expects every ESP packet to be dissected down to its inner protocol
// with good checksums, and no background frame to be taken for ESP.
func TestTsharkDecodesNullFlows(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	var flows []espsynth.Flow
	for _, outer := range []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6} {
		for _, encap := range []espsynth.Encap{espsynth.EncapNone, espsynth.EncapUDP} {
			for tr := espsynth.TrafficHTTP; tr <= espsynth.TrafficMixed; tr++ {
				for _, inner := range []espsynth.IPVersion{0, espsynth.IPv4, espsynth.IPv6} {
					f := espsynth.Flow{Outer: outer, Encap: encap, Traffic: tr, Auth: espsynth.AuthHMACSHA1, Packets: 8}
					if inner != 0 {
						f.Mode, f.Inner = espsynth.Tunnel, inner
					}
					if tr == espsynth.TrafficSCTP {
						f.Padding = espsynth.PaddingExtra
					}
					flows = append(flows, f)
				}
			}
		}
	}
	c := generate(t, 3, espsynth.Config{Flows: flows, Background: 0.2})
	file := filepath.Join(t.TempDir(), "null.pcap")
	if err := os.WriteFile(file, c.pcap, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	fields := []string{"esp.spi", "esp.protocol", "esp.sequence", "ip.proto", "ipv6.nxt", "tcp.checksum.status", "udp.checksum.status",
		"icmp.checksum.status", "icmpv6.checksum.status", "sctp.checksum.status", "ip.checksum.status"}
	args := []string{"-n", "-r", file,
		"-o", "esp.enable_null_encryption_decode_heuristic:TRUE",
		"-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-o", "sctp.checksum:CRC 32c",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.CommandContext(ctx, tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	rows := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(rows) != len(c.frames) {
		t.Fatalf("tshark printed %d rows for %d frames", len(rows), len(c.frames))
	}
	// Checksum status values: 0 bad, 1 good, 2 unverified, 3 not present.
	statusOf := map[string]int{"6": 5, "17": 6, "1": 7, "58": 8, "132": 9}
	esp, bg := 0, 0
	for i, row := range rows {
		col := strings.Split(row, "|")
		if len(col) != len(fields) {
			t.Fatalf("frame %d: tshark row %q", i+1, row)
		}
		if e := findESP(t, c.frames[i]); e == nil {
			bg++
			if col[0] != "" {
				t.Errorf("frame %d: background frame dissected as ESP: %q", i+1, row)
			}
			continue
		}
		esp++
		if col[0] == "" {
			t.Errorf("frame %d: not dissected as ESP: %q", i+1, row)
			continue
		}
		// ESP's next header is the inner protocol in transport mode; in
		// tunnel mode it is the last IPv4 protocol or IPv6 next header.
		nh, err := strconv.ParseUint(col[1], 0, 8)
		if err != nil {
			t.Errorf("frame %d: ESP next header %q: %v", i+1, col[1], err)
			continue
		}
		inner := strconv.FormatUint(nh, 10)
		if nh == 4 || nh == 41 {
			protos := strings.Split(col[3], ",")
			if nh == 41 {
				protos = strings.Split(col[4], ",")
			}
			inner = protos[len(protos)-1]
		}
		st, ok := statusOf[inner]
		if !ok {
			t.Errorf("frame %d: tshark did not reach the inner protocol: %q", i+1, row)
			continue
		}
		vals := strings.Split(col[st], ",")
		if vals[len(vals)-1] != "1" {
			t.Errorf("frame %d: inner protocol %s checksum status %q, want 1 (good): %q", i+1, inner, col[st], row)
		}
		for _, s := range col[5:] {
			if strings.Contains(","+s+",", ",0,") {
				t.Errorf("frame %d: a bad checksum: %q", i+1, row)
			}
		}
	}
	if esp == 0 || bg == 0 {
		t.Fatalf("%d ESP and %d background frames", esp, bg)
	}
	t.Logf("tshark dissected %d ESP-NULL packets to good inner checksums; %d background frames not ESP", esp, bg)
}
