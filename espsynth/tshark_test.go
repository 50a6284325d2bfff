package espsynth_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/espsynth"
)

// tsharkFields are the fields the tshark tests print, in this order.
var tsharkFields = []string{
	"esp.spi", "esp.protocol", "esp.icv_good", "esp.icv_bad", "ip.proto", "ipv6.nxt",
	"tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status",
	"icmpv6.checksum.status", "sctp.checksum.status", "ip.checksum.status",
}

// Column indexes into a tshark row.
const (
	colSPI = iota
	colNextHeader
	colICVGood
	colICVBad
	colIPProto
	colIPv6Next
	colTCPStatus
)

// runTshark dissects c with tshark, with checksum validation on, extra
// preferences and, if espSA is not empty, that ESP SA table, and returns
// one row of tsharkFields per frame.
func runTshark(t *testing.T, c *capture, espSA string, prefs ...string) [][]string {
	t.Helper()
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "synth.pcap")
	if err := os.WriteFile(file, c.pcap, 0o644); err != nil {
		t.Fatal(err)
	}
	// A private configuration directory, so the user's preferences and SA
	// table neither leak in nor get overwritten.
	conf := filepath.Join(dir, "config", "wireshark")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "esp_sa"), []byte(espSA), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-r", file,
		"-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-o", "sctp.checksum:CRC 32c",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, p := range prefs {
		args = append(args, "-o", p)
	}
	// Random payloads sometimes look like RTCP or the like to a heuristic
	// dissector, whose exception then cuts the ESP dissection short: turn
	// off the protocols of every heuristic above UDP, TCP and SCTP.
	heur, err := exec.Command(tshark, "-G", "heuristic-decodes").Output()
	if err != nil {
		t.Fatalf("tshark -G heuristic-decodes: %v", err)
	}
	for _, l := range strings.Split(string(heur), "\n") {
		if f := strings.Fields(l); len(f) == 3 && (f[0] == "udp" || f[0] == "tcp" || f[0] == "sctp") && f[2] == "T" {
			args = append(args, "--disable-protocol", f[1])
		}
	}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "Error loading table") {
		t.Fatalf("tshark rejected the ESP SA table: %s", stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(c.frames) {
		t.Fatalf("tshark printed %d rows for %d frames", len(lines), len(c.frames))
	}
	rows := make([][]string, len(lines))
	for i, l := range lines {
		rows[i] = strings.Split(l, "|")
		if len(rows[i]) != len(tsharkFields) {
			t.Fatalf("frame %d: tshark row %q", i+1, l)
		}
	}
	return rows
}

// checkTsharkInner checks that tshark read an ESP packet's next header as
// want, dissected the payload down to its inner transport protocol and
// found that protocol's checksum good, and no checksum bad.
func checkTsharkInner(col []string, want uint8) error {
	if want == 59 {
		// Wireshark shows nothing, not even the next header, for dummy
		// packets.
		return nil
	}
	nh, err := strconv.ParseUint(col[colNextHeader], 0, 8)
	if err != nil {
		return fmt.Errorf("ESP next header %q: %v", col[colNextHeader], err)
	}
	if nh != uint64(want) {
		return fmt.Errorf("tshark read next header %d, the packet has %d", nh, want)
	}
	// ESP's next header is the inner protocol in transport mode; in tunnel
	// mode it is the last IPv4 protocol or IPv6 next header.
	inner := strconv.FormatUint(nh, 10)
	switch nh {
	case 4, 47: // IPv4 inside ESP, or inside GRE inside ESP
		p := strings.Split(col[colIPProto], ",")
		inner = p[len(p)-1]
	case 41:
		p := strings.Split(col[colIPv6Next], ",")
		inner = p[len(p)-1]
	}
	if inner == "47" { // GRE inside an inner IPv6 datagram carries IPv4
		p := strings.Split(col[colIPProto], ",")
		inner = p[len(p)-1]
	}
	// Checksum status values: 0 bad, 1 good, 2 unverified, 3 not present.
	st, ok := map[string]int{"6": colTCPStatus, "17": colTCPStatus + 1, "1": colTCPStatus + 2, "58": colTCPStatus + 3, "132": colTCPStatus + 4}[inner]
	if !ok {
		return fmt.Errorf("tshark did not reach the inner protocol (next header %d, inner %q)", nh, inner)
	}
	vals := strings.Split(col[st], ",")
	if vals[len(vals)-1] != "1" {
		return fmt.Errorf("inner protocol %s checksum status %q, want 1 (good)", inner, col[st])
	}
	for _, s := range col[colTCPStatus:] {
		if strings.Contains(","+s+",", ",0,") {
			return errors.New("a bad checksum")
		}
	}
	return nil
}

// TestTsharkDecodesNullFlows hands a capture of ESP-NULL flows with
// HMAC-SHA1-96 (no IV, 12-byte ICV, what Wireshark's NULL heuristic
// assumes) to tshark, an ESP implementation independent of this package,
// and expects every ESP packet to be dissected down to its inner protocol
// with good checksums, and no background frame to be taken for ESP.
func TestTsharkDecodesNullFlows(t *testing.T) {
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
	rows := runTshark(t, c, "", "esp.enable_null_encryption_decode_heuristic:TRUE")
	esp, bg := 0, 0
	for i, col := range rows {
		e := findESP(t, c.frames[i])
		if e == nil {
			bg++
			if col[colSPI] != "" {
				t.Errorf("frame %d: background frame dissected as ESP: %q", i+1, col)
			}
			continue
		}
		esp++
		if col[colSPI] == "" {
			t.Errorf("frame %d: not dissected as ESP: %q", i+1, col)
			continue
		}
		sa := c.sas[flowKey{e.src, e.dst, binary.BigEndian.Uint32(e.esp)}]
		pt, err := openESP(sa, e.esp)
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		if err := checkTsharkInner(col, pt[len(pt)-1]); err != nil {
			t.Errorf("frame %d: %v: %q", i+1, err, col)
		}
	}
	if esp == 0 || bg == 0 {
		t.Fatalf("%d ESP and %d background frames", esp, bg)
	}
	t.Logf("tshark dissected %d ESP-NULL packets to good inner checksums; %d background frames not ESP", esp, bg)
}

// TestTsharkDecryptsWithKeys gives tshark the generator's keys as an ESP SA
// table and expects it to verify every ICV and to decrypt every packet of
// the transforms it supports down to inner traffic with good checksums.
func TestTsharkDecryptsWithKeys(t *testing.T) {
	type tr struct {
		c   espsynth.Cipher
		a   espsynth.Auth
		icv int
	}
	var trs []tr
	for _, c := range []espsynth.Cipher{espsynth.CipherNULL, espsynth.CipherAESCBC, espsynth.CipherAESCTR, espsynth.Cipher3DES} {
		for a := espsynth.AuthNone; a <= espsynth.AuthHMACSHA512; a++ {
			trs = append(trs, tr{c: c, a: a})
		}
	}
	trs = append(trs, tr{c: espsynth.CipherAESGCM, icv: 8}, tr{c: espsynth.CipherAESGCM, icv: 12}, tr{c: espsynth.CipherAESGCM, icv: 16})
	var flows []espsynth.Flow
	for i, x := range trs {
		for _, mode := range []espsynth.Mode{espsynth.Transport, espsynth.Tunnel} {
			f := espsynth.Flow{
				Outer: []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[i%2], Encap: espsynth.Encap(i / 2 % 2),
				Mode: mode, Inner: []espsynth.IPVersion{espsynth.IPv4, espsynth.IPv6}[i/4%2],
				Traffic: espsynth.Traffic(i % 9), Cipher: x.c, Auth: x.a, ICVLen: x.icv,
				Padding: espsynth.Padding(i % 2), Packets: 10,
			}
			if mode == espsynth.Tunnel && i%3 == 0 {
				f.Padding, f.Dummy = espsynth.PaddingTFC, true
			}
			flows = append(flows, f)
		}
	}
	g, err := espsynth.NewGenerator(11, espsynth.Config{Flows: flows})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if skipped, err := espsynth.WriteWiresharkESPSA(&table, g.SAs()); err != nil || skipped != 0 {
		t.Fatalf("esp_sa table: %d skipped, %v", skipped, err)
	}
	c := generate(t, 11, espsynth.Config{Flows: flows})
	rows := runTshark(t, c, table.String(),
		"esp.enable_encryption_decode:TRUE", "esp.enable_authentication_check:TRUE")
	checked := 0
	for i, col := range rows {
		e := findESP(t, c.frames[i])
		if e == nil || col[colSPI] == "" {
			t.Fatalf("frame %d: not ESP: %q", i+1, col)
		}
		sa := c.sas[flowKey{e.src, e.dst, uint32(mustParse(t, col[colSPI]))}]
		if sa.ICVLen > 0 && (col[colICVGood] != "1" || col[colICVBad] != "0") {
			t.Errorf("frame %d (%v/%v): tshark's ICV check: good %q bad %q", i+1, sa.Cipher, sa.Auth, col[colICVGood], col[colICVBad])
		}
		pt, err := openESP(sa, e.esp)
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		if err := checkTsharkInner(col, pt[len(pt)-1]); err != nil {
			t.Errorf("frame %d (%v/%v): %v: %q", i+1, sa.Cipher, sa.Auth, err, col)
		}
		checked++
	}
	t.Logf("tshark verified and decrypted %d packets of %d SAs", checked, len(g.SAs()))
}

func mustParse(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
