package xfrm

import (
	"encoding/hex"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	a1 = netip.MustParseAddr("192.0.2.1")
	a2 = netip.MustParseAddr("192.0.2.2")
	v1 = netip.MustParseAddr("2001:db8::1")
	v2 = netip.MustParseAddr("2001:db8::2")
)

func key(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

// encodeCases are the requests whose bytes testdata/*.golden keep. The
// field checks in TestEncodeFields pin the layout independently of them.
var encodeCases = []struct {
	name string
	enc  func() ([]byte, error)
}{
	{"sa-null-sha256-transport", func() ([]byte, error) {
		return encodeNewSA(&SA{Src: a1, Dst: a2, SPI: 0xc1c2c3c4, Mode: Transport, ReqID: 7,
			Selector: Selector{Src: netip.PrefixFrom(a1, 32), Dst: netip.PrefixFrom(a2, 32)},
			Crypt:    &Algorithm{Name: "ecb(cipher_null)"}, Auth: &Algorithm{Name: "hmac(sha256)", Key: key(32), Bits: 128},
			ReplayWindow: 128})
	}},
	{"sa-gmac-tunnel-encap-esn-v6", func() ([]byte, error) {
		return encodeNewSA(&SA{Src: v1, Dst: v2, SPI: 0x01020304, Mode: Tunnel, ReqID: 1,
			AEAD:  &Algorithm{Name: "rfc4543(gcm(aes))", Key: key(20), Bits: 128},
			Encap: &Encap{SrcPort: 4500, DstPort: 4501}, ReplayWindow: 64, ESN: true,
			Limits: Lifetime{SoftBytes: 1000, HardBytes: 2000, SoftPackets: 10, HardPackets: 20}})
	}},
	{"said-v4", func() ([]byte, error) { return encodeSAID(SAID{Dst: a2, SPI: 0xc1c2c3c4}) }},
	{"policy-out-transport", func() ([]byte, error) {
		return encodeNewPolicy(&Policy{Selector: Selector{Src: netip.PrefixFrom(a1, 32), Dst: netip.PrefixFrom(a2, 32), Proto: 6, DstPort: Port{443, 0xffff}},
			Dir: Out, Priority: 1000, Tmpl: Template{Src: a1, Dst: a2, Mode: Transport, ReqID: 7}})
	}},
	{"policy-fwd-tunnel-4in6", func() ([]byte, error) {
		return encodeNewPolicy(&Policy{Selector: Selector{Src: netip.MustParsePrefix("203.0.113.0/24"), Dst: netip.MustParsePrefix("198.51.100.0/24")},
			Dir: Fwd, Priority: 2000, Tmpl: Template{Src: v2, Dst: v1, Mode: Tunnel, ReqID: 3}})
	}},
	{"policyid-in", func() ([]byte, error) {
		return encodePolicyID(&Policy{Selector: Selector{Src: netip.PrefixFrom(a2, 32), Dst: netip.PrefixFrom(a1, 32)}, Dir: In})
	}},
	{"bypass-v6-out", func() ([]byte, error) { return encodeSocketBypass(unix.AF_INET6, Out), nil }},
}

// TestEncodeGolden compares the encoded requests with testdata/*.golden
// (hex); go test -run TestEncodeGolden -update rewrites them.
func TestEncodeGolden(t *testing.T) {
	for _, c := range encodeCases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.enc()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".golden")
			got := hex.Dump(b)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("encoding differs from %s:\ngot\n%s\nwant\n%s", path, got, want)
			}
		})
	}
}

// TestEncodeFields checks fields at the offsets of include/uapi/linux/xfrm.h.
func TestEncodeFields(t *testing.T) {
	b, err := encodeCases[1].enc() // GMAC, tunnel, ESP-in-UDP, ESN, IPv6
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b[56:80]); got != "20010db8000000000000000000000002"+"01020304"+"32000000" {
		t.Errorf("xfrm_id = %s", got)
	}
	if ne.Uint16(b[212:]) != unix.AF_INET6 || b[214] != 1 || b[215] != 0 || b[216] != stateESN {
		t.Errorf("family %d mode %d replay_window %d flags %#x", ne.Uint16(b[212:]), b[214], b[215], b[216])
	}
	if ne.Uint64(b[96:]) != 1000 || ne.Uint64(b[104:]) != 2000 || ne.Uint64(b[112:]) != 10 || ne.Uint64(b[120:]) != 20 {
		t.Errorf("lifetime %x", b[96:128])
	}
	var types []uint16
	err = attrs(b[sizeUserSAInfo:], func(typ uint16, d []byte) error {
		types = append(types, typ)
		switch typ {
		case attrAlgAEAD:
			if n, _ := algName(d); n != "rfc4543(gcm(aes))" || ne.Uint32(d[64:]) != 160 || ne.Uint32(d[68:]) != 128 || len(d) != 72+20 {
				t.Errorf("aead %q keybits %d icv %d len %d", n, ne.Uint32(d[64:]), ne.Uint32(d[68:]), len(d))
			}
		case attrEncap:
			if hex.EncodeToString(d[:6]) != hex.EncodeToString([]byte{byte(udpEncapESPInUDP), 0, 0x11, 0x94, 0x11, 0x95}) {
				t.Errorf("encap %x", d)
			}
		case attrReplayESNVal:
			if ne.Uint32(d) != 2 || ne.Uint32(d[20:]) != 64 || len(d) != 24+8 {
				t.Errorf("replay esn %x", d)
			}
		}
		return nil
	})
	if err != nil || len(types) != 3 {
		t.Errorf("attributes %v: %v", types, err)
	}
	p, _ := encodeCases[3].enc()
	if p[polDir] != dirOut || ne.Uint32(p[polPriority:]) != 1000 || be.Uint16(p[selDport:]) != 443 || p[selProto] != 6 || p[selPrefixD] != 32 {
		t.Errorf("policy %x", p[:sizeUserPolicyInfo])
	}
	if ne.Uint16(p[sizeUserPolicyInfo:]) != 4+sizeUserTmpl || ne.Uint16(p[sizeUserPolicyInfo+2:]) != attrTmpl {
		t.Errorf("template attribute header %x", p[sizeUserPolicyInfo:sizeUserPolicyInfo+4])
	}
}

// TestEncodeErrors checks that invalid SAs and policies are refused
// before they reach the kernel.
func TestEncodeErrors(t *testing.T) {
	gcm := &Algorithm{Name: "rfc4106(gcm(aes))", Key: key(20), Bits: 128}
	for _, c := range []struct {
		name string
		err  error
		sa   SA
	}{
		{"mixed families", ErrFamily, SA{Src: a1, Dst: v2, AEAD: gcm}},
		{"no destination", ErrFamily, SA{Src: a1, AEAD: gcm}},
		{"no algorithm", ErrAlgorithm, SA{Src: a1, Dst: a2}},
		{"aead and crypt", ErrAlgorithm, SA{Src: a1, Dst: a2, AEAD: gcm, Crypt: gcm, Auth: gcm}},
		{"crypt without auth", ErrAlgorithm, SA{Src: a1, Dst: a2, Crypt: &Algorithm{Name: "cbc(aes)", Key: key(16)}}},
		{"long name", ErrAlgorithm, SA{Src: a1, Dst: a2, AEAD: &Algorithm{Name: strings.Repeat("x", 64), Bits: 128}}},
		{"aead without icv", ErrAlgorithm, SA{Src: a1, Dst: a2, AEAD: &Algorithm{Name: "rfc4106(gcm(aes))", Key: key(20)}}},
		{"huge key", ErrAlgorithm, SA{Src: a1, Dst: a2, AEAD: &Algorithm{Name: "x", Key: make([]byte, 4096), Bits: 128}}},
		{"selector family", ErrFamily, SA{Src: a1, Dst: a2, AEAD: gcm, Selector: Selector{Src: netip.MustParsePrefix("2001:db8::/64"), Dst: netip.MustParsePrefix("192.0.2.0/24")}}},
	} {
		if _, err := encodeNewSA(&c.sa); err == nil || (c.err != nil && !strings.Contains(err.Error(), c.err.Error())) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
	}
	if _, err := encodeNewPolicy(&Policy{Dir: Out}); err == nil {
		t.Error("policy without selector accepted")
	}
	if _, err := encodeNewPolicy(&Policy{Selector: Selector{Src: netip.PrefixFrom(a1, 32)}, Dir: Out, Tmpl: Template{Mode: Tunnel}}); err == nil {
		t.Error("tunnel template without addresses accepted")
	}
}

func BenchmarkEncodeNewSA(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeCases[0].enc(); err != nil {
			b.Fatal(err)
		}
	}
}
