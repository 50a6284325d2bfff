package xfrm

import (
	"errors"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// reply builds a kernel message of type typ with body.
func reply(typ uint16, seq uint32, body []byte) []byte {
	b := request(typ, 0, seq, body)
	ne.PutUint16(b[6:], 0)
	return b
}

func saReply(t testing.TB) []byte {
	body, err := encodeCases[1].enc()
	if err != nil {
		t.Fatal(err)
	}
	// Counters as the kernel fills them in.
	ne.PutUint64(body[saCurLft:], 4242)
	ne.PutUint64(body[saCurLft+8:], 42)
	ne.PutUint32(body[saStats+8:], 3)
	return reply(msgNewSA, 9, body)
}

func TestParseMessages(t *testing.T) {
	errMsg := reply(unix.NLMSG_ERROR, 9, []byte{0xfd, 0xff, 0xff, 0xff}) // -ESRCH
	ack := reply(unix.NLMSG_ERROR, 9, make([]byte, 4))
	for _, c := range []struct {
		name  string
		in    []byte
		count int
		err   error
	}{
		{"sa and ack", append(saReply(t), ack...), 2, nil},
		{"short header", make([]byte, 8), 0, ErrTruncated},
		{"length past end", func() []byte { b := reply(msgNewSA, 1, nil); ne.PutUint32(b, 100); return b }(), 0, ErrTruncated},
		{"length below header", func() []byte { b := reply(msgNewSA, 1, nil); ne.PutUint32(b, 4); return b }(), 0, ErrTruncated},
		{"error", errMsg, 1, nil},
	} {
		ms, err := parseMessages(c.in)
		if len(ms) != c.count || !errors.Is(err, c.err) {
			t.Errorf("%s: %d messages, err %v; want %d, %v", c.name, len(ms), err, c.count, c.err)
		}
	}
	ms, _ := parseMessages(errMsg)
	if err := kernelError(errorCode(ms[0].data)); !errors.Is(err, ErrNotFound) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("ESRCH mapped to %v", err)
	}
	ms, _ = parseMessages(saReply(t))
	s, err := parseSA(ms[0].data)
	if err != nil {
		t.Fatal(err)
	}
	if s.SPI != 0x01020304 || s.Dst != v2 || s.Src != v1 || s.Mode != Tunnel || s.Bytes != 4242 || s.Packets != 42 ||
		s.IntegrityFailures != 3 || s.AEAD != "rfc4543(gcm(aes))" || s.Encap == nil || s.Encap.DstPort != 4501 {
		t.Errorf("parsed %+v", s)
	}
}

func TestParseExpire(t *testing.T) {
	body, _ := encodeCases[0].enc()
	e, err := parseExpire(append(body[:sizeUserSAInfo:sizeUserSAInfo], 1, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || !e.Hard || e.State.SPI != 0xc1c2c3c4 || e.State.Dst != a2 {
		t.Errorf("expire %+v, %v", e, err)
	}
	if _, err := parseExpire(body[:100]); !errors.Is(err, ErrTruncated) {
		t.Errorf("short expire: %v", err)
	}
}

// FuzzParse feeds datagrams to the parsers of kernel messages; they must
// return an error or a value, never panic. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(saReply(f))
	body, _ := encodeCases[0].enc()
	f.Add(reply(msgExpire, 0, append(body[:sizeUserSAInfo:sizeUserSAInfo], 1, 0, 0, 0, 0, 0, 0, 0)))
	f.Add(reply(unix.NLMSG_ERROR, 1, []byte{0xef, 0xff, 0xff, 0xff}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, _ := parseMessages(b)
		for _, m := range ms {
			switch m.typ {
			case unix.NLMSG_ERROR:
				errorCode(m.data)
			case msgExpire:
				parseExpire(m.data)
			default:
				parseSA(m.data)
			}
		}
	})
}
