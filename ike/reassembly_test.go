package ike

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// fragHarness is a sending and a receiving IKE SA sharing one key
// (AES-128-GCM, so fragments authenticate), the receiver a responder
// waiting for IKE_AUTH (message ID 1), on a real endpoint whose counters
// and budget the test reads.
type fragHarness struct {
	ep     *Endpoint
	tx, rx *IKESA
	inner  []byte // the message both attempts carry
}

func newFragHarness(tb testing.TB, ep *Endpoint) *fragHarness {
	tb.Helper()
	cfg, _ := configs("aes128gcm16-prfsha256-x25519", "null-sha256", nil, nil)
	c, err := cfg.validate()
	if err != nil {
		tb.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 20)
	cipher := func() *ikecrypto.SKCipher {
		sk, err := ikecrypto.NewSKCipher(message.ENCR_AES_GCM_16, 128, message.AUTH_NONE, key, nil)
		if err != nil {
			tb.Fatal(err)
		}
		return sk
	}
	// Answers (resent responses) go to the discard port.
	sink := netip.MustParseAddrPort("127.0.0.1:9")
	tx := newSA(ep, c, true)
	tx.spiI, tx.spiR, tx.out, tx.frag.on, tx.remote = 1, 2, cipher(), true, sink
	rx := newSA(ep, c, false)
	rx.spiI, rx.spiR, rx.in, rx.frag.on, rx.remote, rx.peerReqID = 1, 2, cipher(), true, sink, 1
	inner, _, err := message.AppendPayloads(nil, fragBigInformational(2000))
	if err != nil {
		tb.Fatal(err)
	}
	return &fragHarness{ep: ep, tx: tx, rx: rx, inner: inner}
}

// frags returns the fragments of the harness message with ID id in
// datagrams of at most limit bytes.
func (h *fragHarness) frags(tb testing.TB, id uint32, limit int) [][]byte {
	tb.Helper()
	fs, err := h.tx.fragmentLocked(message.IKE_AUTH, false, id, message.PayloadNotify, h.inner, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return fs
}

// feed hands one datagram to the receiver as the read loop would.
func (h *fragHarness) feed(pkt []byte) *reassembled {
	pkt = append([]byte(nil), pkt...)
	hdr, err := message.DecodeHeader(pkt)
	if err != nil {
		return nil
	}
	in, ok := h.rx.defragment(inbound{pkt: pkt, hdr: hdr, from: h.rx.remote})
	if !ok {
		return nil
	}
	return in.frags
}

func (h *fragHarness) release() {
	h.rx.mu.Lock()
	h.rx.releaseFragmentsLocked()
	h.rx.mu.Unlock()
}

// fragStep is one datagram of a reassembly case: fragment i (0-based) of
// attempt "a" (4 fragments of 600 bytes), "b" (9 of 300) or "c" (5 of
// 500), optionally corrupted or with another message ID; or a pause.
type fragStep struct {
	set     string
	i       int
	corrupt bool
	id      uint32 // 0: 1
	sleep   time.Duration
}

// TestReassemblyRules checks the RFC 7383 2.6 rules and espy's limits on
// one message in flight: the message must come out exactly at the fragStep
// named, and the counters must say why the others were dropped.
func TestReassemblyRules(t *testing.T) {
	a := func(is ...int) []fragStep {
		var s []fragStep
		for _, i := range is {
			s = append(s, fragStep{set: "a", i: i})
		}
		return s
	}
	cat := func(ss ...[]fragStep) []fragStep {
		var out []fragStep
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	cases := []struct {
		name  string
		lim   FragmentLimits
		steps []fragStep
		done  int // index of the completing fragStep; -1: never
		want  FragmentStats
	}{
		{name: "in order", steps: a(0, 1, 2, 3), done: 3, want: FragmentStats{Received: 4, Reassembled: 1}},
		{name: "out of order", steps: a(3, 1, 0, 2), done: 3, want: FragmentStats{Received: 4, Reassembled: 1}},
		{name: "duplicates", steps: a(0, 0, 1, 1, 2, 3), done: 5, want: FragmentStats{Received: 4, Reassembled: 1, Duplicates: 2}},
		{name: "missing then retransmission", steps: a(0, 1, 3, 0, 1, 2), done: 5, want: FragmentStats{Received: 4, Reassembled: 1, Duplicates: 2}},
		{name: "bad ICV", steps: cat(a(0), []fragStep{{set: "a", i: 1, corrupt: true}}, a(2, 3, 1)), done: 4, want: FragmentStats{Received: 4, Reassembled: 1, BadICV: 1}},
		{name: "too many fragments", lim: FragmentLimits{MaxFragments: 8}, steps: []fragStep{{set: "b", i: 0}, {set: "b", i: 1}}, done: -1, want: FragmentStats{OverLimit: 2}},
		// A fragment that goes over abandons the reassembly and the next
		// one starts another (fragment 3 of 4 is shorter and fits).
		{name: "too large", lim: FragmentLimits{MaxMessageLen: 1000}, steps: a(0, 1, 2, 3), done: -1, want: FragmentStats{Received: 3, OverLimit: 1}},
		{name: "endpoint budget", lim: FragmentLimits{Budget: 700}, steps: a(0, 1, 2, 3), done: -1, want: FragmentStats{Received: 2, OverLimit: 2}},
		{name: "late duplicate after completion", steps: a(0, 1, 2, 3, 1, 0), done: 3, want: FragmentStats{Received: 4, Reassembled: 1, Duplicates: 2}},
		{
			name:  "larger total restarts, smaller dropped",
			steps: []fragStep{{set: "a", i: 0}, {set: "a", i: 1}, {set: "b", i: 0}, {set: "a", i: 2}, {set: "b", i: 1}, {set: "b", i: 2}, {set: "b", i: 3}, {set: "b", i: 4}, {set: "b", i: 5}, {set: "b", i: 6}, {set: "b", i: 7}, {set: "c", i: 0}, {set: "b", i: 8}},
			done:  12, want: FragmentStats{Received: 11, Reassembled: 1, Dropped: 2},
		},
		{name: "timeout", lim: FragmentLimits{Timeout: 30 * time.Millisecond}, steps: cat(a(0, 1), []fragStep{{sleep: 80 * time.Millisecond}}, a(2, 3, 0, 1)), done: 6, want: FragmentStats{Received: 6, Reassembled: 1, Expired: 1}},
		{name: "other message ID", steps: []fragStep{{set: "a", i: 0, id: 2}, {set: "a", i: 0, id: 7}}, done: -1, want: FragmentStats{Dropped: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newFragHarness(t, listen(t, ListenConfig{Fragments: c.lim}))
			sets := map[string][][]byte{"a": h.frags(t, 1, 600), "b": h.frags(t, 1, 300), "c": h.frags(t, 1, 500)}
			if len(sets["a"]) != 4 || len(sets["b"]) != 9 || len(sets["c"]) != 5 {
				t.Fatalf("attempts of %d, %d, %d fragments", len(sets["a"]), len(sets["b"]), len(sets["c"]))
			}
			done := -1
			for i, s := range c.steps {
				if s.sleep > 0 {
					time.Sleep(s.sleep)
					continue
				}
				pkt := append([]byte(nil), sets[s.set][s.i]...)
				if s.id != 0 {
					pkt = h.withID(t, s.set, s.i, s.id)
				}
				if s.corrupt {
					pkt[len(pkt)-1] ^= 1
				}
				if m := h.feed(pkt); m != nil {
					if done >= 0 {
						t.Fatalf("second message at fragStep %d", i)
					}
					done = i
					if m.first != message.PayloadNotify || !bytes.Equal(m.plain, h.inner) {
						t.Fatalf("reassembled %v, %d bytes; want Notify, %d bytes", m.first, len(m.plain), len(h.inner))
					}
				}
				if n := h.ep.ReassemblyBytes(); n > h.ep.frag.lim.Budget {
					t.Fatalf("%d bytes held, budget %d", n, h.ep.frag.lim.Budget)
				}
			}
			if done != c.done {
				t.Fatalf("message completed at fragStep %d, want %d", done, c.done)
			}
			if got := h.ep.FragmentStats(); got != c.want {
				t.Fatalf("counters %+v, want %+v", got, c.want)
			}
			h.release()
			if n := h.ep.ReassemblyBytes(); n != 0 {
				t.Fatalf("%d bytes held after release", n)
			}
		})
	}
}

// withID re-seals fragment i of attempt set under message ID id.
func (h *fragHarness) withID(tb testing.TB, set string, i int, id uint32) []byte {
	limit := map[string]int{"a": 600, "b": 300, "c": 500}[set]
	return h.frags(tb, id, limit)[i]
}

// TestReassemblyTimerFrees checks that an abandoned reassembly gives its
// bytes back at the timeout without any further fragment.
func TestReassemblyTimerFrees(t *testing.T) {
	h := newFragHarness(t, listen(t, ListenConfig{Fragments: FragmentLimits{Timeout: 20 * time.Millisecond}}))
	fs := h.frags(t, 1, 600)
	h.feed(fs[0])
	if h.ep.ReassemblyBytes() == 0 {
		t.Fatal("nothing held after one fragment")
	}
	waitFor(t, func() bool { return h.ep.ReassemblyBytes() == 0 })
	if st := h.ep.FragmentStats(); st.Expired != 1 {
		t.Fatalf("counters %+v", st)
	}
}

// TestRetransmittedFragmentedRequest checks RFC 7383 2.6 for a request
// already answered: its fragment 1 (authenticated) makes the responder
// resend every fragment of the stored response, other fragments and
// forged ones do nothing.
func TestRetransmittedFragmentedRequest(t *testing.T) {
	h := newFragHarness(t, listen(t, ListenConfig{}))
	fs := h.frags(t, 1, 600)
	for _, f := range fs {
		h.feed(f)
	}
	h.rx.mu.Lock()
	h.rx.out = h.tx.out
	h.rx.peerReqID = 2
	h.rx.lastResp, _ = h.rx.fragmentLocked(message.IKE_AUTH, true, 1, message.PayloadNotify, h.inner, 500)
	nResp := len(h.rx.lastResp)
	h.rx.mu.Unlock()
	before := h.ep.FragmentStats()
	bad := append([]byte(nil), fs[0]...)
	bad[len(bad)-1] ^= 1
	for _, f := range [][]byte{fs[1], fs[2], bad} {
		if h.feed(f) != nil {
			t.Fatal("old request reassembled again")
		}
	}
	if got := h.ep.FragmentStats(); got.Sent != before.Sent || got.BadICV != before.BadICV+1 {
		t.Fatalf("counters %+v → %+v", before, got)
	}
	h.feed(fs[0])
	if got := h.ep.FragmentStats(); got.Sent != before.Sent+uint64(nResp) {
		t.Fatalf("resent %d fragments, want %d", got.Sent-before.Sent, nResp)
	}
}

// TestReassemblyRefuses checks fragments that are never kept: IKE_SA_INIT,
// fragmentation not negotiated, no keys yet.
func TestReassemblyRefuses(t *testing.T) {
	h := newFragHarness(t, listen(t, ListenConfig{}))
	fs := h.frags(t, 1, 600)
	init := append([]byte(nil), fs[0]...)
	init[18] = byte(message.IKE_SA_INIT)
	h.feed(init)
	h.rx.frag.on = false
	h.feed(fs[0])
	h.rx.frag.on, h.rx.in = true, nil
	h.feed(fs[0])
	if st := h.ep.FragmentStats(); st.Dropped != 3 || st.Received != 0 || h.ep.ReassemblyBytes() != 0 {
		t.Fatalf("counters %+v, %d bytes held", st, h.ep.ReassemblyBytes())
	}
}

// FuzzReassembly feeds a reassembler sequences of fragments. Each record
// is either a raw datagram (high bit of the first byte set) or a fragment
// sealed with the right key, whose Fragment Number, Total Fragments,
// message ID, Next Payload and content the fuzzer picks: the reassembler
// must hold no more than its limits, never panic, hand out only complete
// messages, and give every byte back.
//
// Record: flags|number (1), total (1), message ID (1), next payload (1),
// length (2, big endian, capped at 1500), data.
func FuzzReassembly(f *testing.F) {
	ep := listen(f, ListenConfig{Fragments: FragmentLimits{MaxMessageLen: 4000, Budget: 6000}})
	rec := func(number, total, id, next byte, data []byte) []byte {
		b := []byte{number, total, id, next}
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		return append(b, data...)
	}
	notify, _, _ := message.AppendPayloads(nil, fragBigInformational(300))
	f.Add(append(rec(1, 2, 1, byte(message.PayloadNotify), notify[:150]), rec(2, 2, 1, 0, notify[150:])...))
	f.Add(append(rec(2, 3, 1, 0, []byte("xy")), rec(1, 2, 1, 41, []byte("z"))...))
	f.Add(rec(0x80, 0, 0, 0, []byte("raw datagram")))
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newFragHarness(t, ep)
		for len(in) >= 6 {
			number, total, id, next := in[0], in[1], in[2], message.PayloadType(in[3])
			n := min(int(binary.BigEndian.Uint16(in[4:6])), len(in)-6, 1500)
			data := in[6 : 6+n]
			in = in[6+n:]
			var pkt []byte
			if number&0x80 != 0 {
				pkt = data
			} else {
				var err error
				pkt, err = h.tx.sealFragment(message.IKE_AUTH, false, uint32(id), uint16(number), uint16(total), next, data)
				if err != nil {
					t.Fatal(err)
				}
			}
			if m := h.feed(pkt); m != nil {
				if len(m.plain) > ep.frag.lim.MaxMessageLen {
					t.Fatalf("reassembled %d bytes, limit %d", len(m.plain), ep.frag.lim.MaxMessageLen)
				}
				message.DecodePayloads(m.first, m.plain)
			}
			if n := ep.ReassemblyBytes(); n > ep.frag.lim.Budget {
				t.Fatalf("%d bytes held, budget %d", n, ep.frag.lim.Budget)
			}
		}
		h.release()
		if n := ep.ReassemblyBytes(); n != 0 {
			t.Fatalf("%d bytes held after release", n)
		}
	})
}

// BenchmarkFragmentReassemble splits a 5000-byte IKE_AUTH-sized message
// into 1280-byte fragments (AES-128-GCM) and reassembles it, against
// sealing and opening it whole: what RFC 7383 costs per message.
func BenchmarkFragmentReassemble(b *testing.B) {
	h := newFragHarness(b, listen(b, ListenConfig{}))
	ps := fragBigInformational(5000)
	h.inner, _, _ = message.AppendPayloads(nil, ps)
	limit := maxIKELen(DefaultFragmentSize, loopback, false)
	b.Run("fragments", func(b *testing.B) {
		b.SetBytes(int64(len(h.inner)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			// A fresh message ID each time, as a real sender's would be.
			id := uint32(i + 1)
			h.rx.peerReqID = id
			fs := h.frags(b, id, limit)
			var m *reassembled
			for _, f := range fs {
				m = h.feed(f)
			}
			if m == nil || len(m.plain) != len(h.inner) {
				b.Fatal("not reassembled")
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(len(h.inner)))
		b.ReportAllocs()
		for b.Loop() {
			pkt, err := h.tx.seal(message.IKE_AUTH, false, 1, ps)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.rx.open(pkt); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var updateFragments = flag.Bool("update-fragments", false, "rewrite testdata/fragments-aes128gcm16.golden")

// TestFragmentGolden pins the wire form of fragments (AES-128-GCM with a
// fixed key, so IVs count from 1): IKE header with Next Payload SKF, SKF
// header with the first inner type only in fragment 1, Fragment Number,
// Total Fragments, IV, ciphertext, ICV. It also decodes each with the
// message codec.
func TestFragmentGolden(t *testing.T) {
	h := newFragHarness(t, listen(t, ListenConfig{}))
	h.inner, _, _ = message.AppendPayloads(nil, fragBigInformational(500))
	fs := h.frags(t, 1, 300)
	var dump strings.Builder
	for i, f := range fs {
		m, err := message.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		skf, ok := message.Get(m.Payloads, message.PayloadSKF).(*message.SKF)
		want := message.PayloadNone
		if i == 0 {
			want = message.PayloadNotify
		}
		if !ok || int(skf.Number) != i+1 || int(skf.Total) != len(fs) || skf.NextPayload != want || len(f) > 300 {
			t.Fatalf("fragment %d: %+v, %d bytes", i+1, skf, len(f))
		}
		fmt.Fprintf(&dump, "# fragment %d of %d\n", i+1, len(fs))
		for j := 0; j < len(f); j += 16 {
			dump.WriteString(hex.EncodeToString(f[j:min(j+16, len(f))]))
			dump.WriteByte('\n')
		}
	}
	path := filepath.Join("testdata", "fragments-aes128gcm16.golden")
	if *updateFragments {
		if err := os.WriteFile(path, []byte(dump.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -run FragmentGolden -update-fragments once)", err)
	}
	if string(want) != dump.String() {
		t.Fatalf("%s differs:\n got\n%s\nwant\n%s", path, dump.String(), want)
	}
}
