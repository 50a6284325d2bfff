package message

import "testing"

// BenchmarkCodec measures encoding and decoding the messages of a
// handshake, as both ends of every IKE SA do, with allocations: the
// IKE_SA_INIT request whole (BenchmarkDecodeInit decodes it), and the
// plaintext payload chain of an IKE_AUTH request (what goes inside, or
// comes out of, its SK payload).
func BenchmarkCodec(b *testing.B) {
	initMsg := initRequest()
	plain := authPlain()
	inner, first, err := AppendPayloads(nil, plain)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("EncodeInit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := initMsg.Encode(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EncodeAuthPlain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := AppendPayloads(nil, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeAuthPlain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodePayloads(first, inner); err != nil {
				b.Fatal(err)
			}
		}
	})
}
