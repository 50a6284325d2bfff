package ike

import (
	"context"
	"testing"
)

// BenchmarkHandshake measures a complete IKE_SA_INIT + IKE_AUTH (one IKE SA
// and one Child SA, both ends in this process over loopback UDP) followed
// by the INFORMATIONAL delete, per IKE suite.
func BenchmarkHandshake(b *testing.B) {
	for _, ike := range []string{"aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp256", "aes128-sha256-modp2048"} {
		b.Run(ike, func(b *testing.B) {
			iniReg, respReg := &recorder{}, &recorder{}
			ini := listen(b, ListenConfig{})
			resp := listen(b, ListenConfig{CookieThreshold: 1 << 20})
			ic, rc := configs(ike, "null-sha256", iniReg, respReg)
			if err := resp.Respond(rc); err != nil {
				b.Fatal(err)
			}
			addr, _ := resp.Addrs()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				sa, err := ini.Initiate(ctx, ic, addr)
				if err != nil {
					b.Fatal(err)
				}
				if err := sa.Delete(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
