package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/espy-dpi/espy/ike/message"
)

// suite is one algorithm combination with its key lengths.
type suite struct {
	name             string
	encr             uint16
	encrLen          int
	integ            uint16
	integLen         int
	ivLen, icv, algn int
}

var suites = []suite{
	{"null-sha1", message.ENCR_NULL, 0, message.AUTH_HMAC_SHA1_96, 20, 0, 12, 4},
	{"null-sha256", message.ENCR_NULL, 0, message.AUTH_HMAC_SHA2_256_128, 32, 0, 16, 4},
	{"null-sha384", message.ENCR_NULL, 0, message.AUTH_HMAC_SHA2_384_192, 48, 0, 24, 4},
	{"null-sha512", message.ENCR_NULL, 0, message.AUTH_HMAC_SHA2_512_256, 64, 0, 32, 4},
	{"null-aesxcbc", message.ENCR_NULL, 0, message.AUTH_AES_XCBC_96, 16, 0, 12, 4},
	{"null-aescmac", message.ENCR_NULL, 0, message.AUTH_AES_CMAC_96, 16, 0, 12, 4},
	{"aes128-sha256", message.ENCR_AES_CBC, 16, message.AUTH_HMAC_SHA2_256_128, 32, 16, 16, 16},
	{"aes256-sha512", message.ENCR_AES_CBC, 32, message.AUTH_HMAC_SHA2_512_256, 64, 16, 32, 16},
	{"aes128ctr-sha1", message.ENCR_AES_CTR, 20, message.AUTH_HMAC_SHA1_96, 20, 8, 12, 4},
	{"aes256ctr-sha384", message.ENCR_AES_CTR, 36, message.AUTH_HMAC_SHA2_384_192, 48, 8, 24, 4},
	{"aes128gcm8", message.ENCR_AES_GCM_8, 20, message.AUTH_NONE, 0, 8, 8, 4},
	{"aes192gcm12", message.ENCR_AES_GCM_12, 28, message.AUTH_NONE, 0, 8, 12, 4},
	{"aes256gcm16", message.ENCR_AES_GCM_16, 36, message.AUTH_NONE, 0, 8, 16, 4},
	{"aes128gmac", message.ENCR_NULL_AUTH_AES_GMAC, 20, message.AUTH_NONE, 0, 8, 16, 4},
	{"aes256gmac", message.ENCR_NULL_AUTH_AES_GMAC, 36, message.AUTH_NONE, 0, 8, 16, 4},
	{"chacha20poly1305", message.ENCR_CHACHA20_POLY1305, 36, message.AUTH_NONE, 0, 8, 16, 4},
}

func keys(s suite, seed uint64) (encr, integ []byte) {
	r := rand.New(rand.NewPCG(seed, 7))
	encr, integ = make([]byte, s.encrLen), make([]byte, s.integLen)
	for i := range encr {
		encr[i] = byte(r.Uint32())
	}
	for i := range integ {
		integ[i] = byte(r.Uint32())
	}
	return encr, integ
}

func pair(t testing.TB, s suite, esn bool) (*Outbound, *Inbound) {
	t.Helper()
	ek, ik := keys(s, 1)
	cfg := Config{SPI: 0x01020304, EncrID: s.encr, EncrKey: ek, IntegID: s.integ, IntegKey: ik, ESN: esn}
	o, err := NewOutbound(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInbound(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o, in
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/esn=%v", s.name, esn), func(t *testing.T) {
				o, in := pair(t, s, esn)
				if esn {
					// Cross an epoch: ESN high bits must be used.
					o.SetSeq(1<<32 - 3)
					in.w.Accept(1<<32 - 3)
				}
				for n := 0; n <= 70; n++ {
					payload := bytes.Repeat([]byte{byte(n)}, n)
					pkt, err := o.Seal(nil, payload, 17)
					if err != nil {
						t.Fatal(err)
					}
					if want := n + o.Overhead(n); len(pkt) != want {
						t.Fatalf("len %d, want %d", len(pkt), want)
					}
					body := len(pkt) - HeaderLen - s.ivLen - s.icv
					if body%s.algn != 0 {
						t.Fatalf("body of %d bytes not aligned to %d", body, s.algn)
					}
					encrypted := s.encr != message.ENCR_NULL && s.encr != message.ENCR_NULL_AUTH_AES_GMAC
					if n >= 8 && bytes.Contains(pkt[HeaderLen:], payload) == encrypted {
						t.Fatalf("payload in clear: %v, want %v", !encrypted, !encrypted)
					}
					got, nh, seq, err := in.Open(pkt)
					if err != nil {
						t.Fatalf("open %d bytes: %v", n, err)
					}
					if !bytes.Equal(got, payload) || nh != 17 || seq != o.Seq() {
						t.Fatalf("got %x nh %d seq %d, want %x 17 %d", got, nh, seq, payload, o.Seq())
					}
				}
				if c := in.Counters(); c.Packets != 71 || c.AuthFailures != 0 {
					t.Fatalf("counters %+v", c)
				}
			})
		}
	}
}

func TestTampered(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			o, in := pair(t, s, false)
			payload := []byte("0123456789abcdef0123456789")
			clean, _ := o.Seal(nil, payload, 6)
			for i := range clean {
				pkt := bytes.Clone(clean)
				pkt[i] ^= 0x40
				_, _, _, err := in.Open(pkt)
				want := ErrAuth
				if i < 4 {
					want = ErrSPI
				}
				if !errors.Is(err, want) && !(i >= 4 && i < 8 && errors.Is(err, ErrReplay)) {
					t.Fatalf("byte %d flipped: %v, want %v", i, err, want)
				}
			}
			// Wrong key: same algorithm, other keying material.
			ek, ik := keys(s, 2)
			other, _ := NewInbound(Config{SPI: 0x01020304, EncrID: s.encr, EncrKey: ek, IntegID: s.integ, IntegKey: ik})
			if _, _, _, err := other.Open(bytes.Clone(clean)); !errors.Is(err, ErrAuth) {
				t.Fatalf("other key: %v", err)
			}
			if _, _, _, err := in.Open(clean); err != nil {
				t.Fatal(err)
			}
			if c := in.Counters(); c.AuthFailures < uint64(len(clean)-8) {
				t.Fatalf("counters %+v", c)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	s := suites[1] // null-sha256: the trailer can be forged with the key
	_, ik := keys(s, 1)
	o, in := pair(t, s, false)
	m, _ := newMAC(s.integ, ik)
	reseal := func(pkt []byte) []byte {
		m.sum(pkt[len(pkt)-16:], pkt[:len(pkt)-16], nil)
		return pkt
	}
	cases := []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"short", func(p []byte) []byte { return p[:20] }, ErrShort},
		{"unaligned", func(p []byte) []byte { return reseal(append(p[:len(p)-16], make([]byte, 17)...)) }, ErrShort},
		{"pad byte", func(p []byte) []byte { p[8+9] = 2; return reseal(p) }, ErrPadding},
		{"pad length", func(p []byte) []byte { p[8+10] = 11; return reseal(p) }, ErrPadding},
		{"pad beyond body", func(p []byte) []byte { p[8+10] = 200; return reseal(p) }, ErrPadding},
		{"dummy", func(p []byte) []byte { p[8+11] = ProtoDummy; return reseal(p) }, ErrDummy},
		{"seq zero", func(p []byte) []byte { binary.BigEndian.PutUint32(p[4:], 0); return reseal(p) }, ErrReplay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pkt, _ := o.Seal(nil, []byte("abcdefghi"), 17) // 9 + pad 1 + 2 = 12
			_, _, _, err := in.Open(c.edit(pkt))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestReplayInOpen(t *testing.T) {
	o, in := pair(t, suites[12], false)
	var pkts [][]byte
	for i := 0; i < 3000; i++ {
		p, _ := o.Seal(nil, []byte{1, 2, 3, 4}, 17)
		pkts = append(pkts, p)
	}
	open := func(i int) error {
		_, _, _, err := in.Open(bytes.Clone(pkts[i]))
		return err
	}
	for _, i := range []int{5, 1, 0, 2999, 2999 - 1023, 2500} {
		if err := open(i); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	// seq 1976 (index 1975) is exactly outside the 1024-packet window.
	for _, i := range []int{5, 2999, 2999 - 1023, 1975, 0} {
		if err := open(i); !errors.Is(err, ErrReplay) {
			t.Fatalf("packet %d again: %v", i, err)
		}
	}
	if c := in.Counters(); c.ReplayDrops != 5 || c.Packets != 6 {
		t.Fatalf("counters %+v", c)
	}
}

func TestSeqExhausted(t *testing.T) {
	for _, esn := range []bool{false, true} {
		o, _ := pair(t, suites[0], esn)
		limit := uint64(1<<32 - 1)
		if esn {
			limit = ^uint64(0)
		}
		o.SetSeq(limit - 1)
		if _, err := o.Seal(nil, nil, 17); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Seal(nil, nil, 17); !errors.Is(err, ErrSeqExhausted) {
			t.Fatalf("esn=%v: %v", esn, err)
		}
	}
}

func TestBadConfig(t *testing.T) {
	cases := []Config{
		{EncrID: message.ENCR_NULL, IntegID: message.AUTH_NONE},
		{EncrID: message.ENCR_AES_CBC, EncrKey: make([]byte, 15), IntegID: message.AUTH_HMAC_SHA1_96, IntegKey: make([]byte, 20)},
		{EncrID: message.ENCR_AES_GCM_16, EncrKey: make([]byte, 20), IntegID: message.AUTH_HMAC_SHA1_96, IntegKey: make([]byte, 20)},
		{EncrID: message.ENCR_AES_GCM_16, EncrKey: make([]byte, 19)},
		{EncrID: message.ENCR_CHACHA20_POLY1305, EncrKey: make([]byte, 32)},
		{EncrID: message.ENCR_NULL, IntegID: message.AUTH_HMAC_SHA2_256_128, IntegKey: make([]byte, 20)},
		{EncrID: message.ENCR_AES_CCM_16, EncrKey: make([]byte, 19)},
		{EncrID: message.ENCR_NULL, IntegID: message.AUTH_HMAC_SHA1_96, IntegKey: make([]byte, 20), ReplayWindow: MaxReplayWindow + 1},
	}
	for i, c := range cases {
		if _, err := NewInbound(c); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

// TestGCM8MatchesFullTag checks the truncated-tag path against the
// standard library's 16-byte GCM: the ICV must be the tag's prefix.
func TestGCM8MatchesFullTag(t *testing.T) {
	s := suites[10]
	o, _ := pair(t, s, true)
	o.SetSeq(5 << 32)
	ek, _ := keys(s, 1)
	pkt, _ := o.Seal(nil, []byte("hello gcm eight"), 17)
	b, _ := aes.NewCipher(ek[:16])
	g, _ := cipher.NewGCM(b)
	nonce := append(bytes.Clone(ek[16:20]), pkt[8:16]...)
	aad := append(append(bytes.Clone(pkt[:4]), 0, 0, 0, 5), pkt[4:8]...)
	body := []byte("hello gcm eight")
	pad := (4 - (15+2)%4) % 4
	for i := 0; i < pad; i++ {
		body = append(body, byte(i+1))
	}
	body = append(body, byte(pad), 17)
	full := g.Seal(nil, nonce, body, aad)
	if !bytes.Equal(full[:len(body)], pkt[16:16+len(body)]) || !bytes.Equal(full[len(body):len(body)+8], pkt[len(pkt)-8:]) {
		t.Fatalf("GCM-8 packet\n%x\ndoes not match GCM\n%x", pkt[16:], full)
	}
}
