package config

import (
	"time"

	"github.com/espy-dpi/espy/ike"
)

// Lifetimes are a tunnel's IKE and Child SA lifetimes in ike.Config's
// terms: zero is the stack's default, negative turns the timer off.
type Lifetimes struct {
	IKERekey, IKEReauth, IKEOver, IKERand time.Duration
	ChildRekey, ChildLife, ChildRand      time.Duration
}

// Apply copies the lifetimes into cfg.
func (l Lifetimes) Apply(cfg *ike.Config) {
	cfg.IKERekeyTime, cfg.IKEReauthTime, cfg.IKEOverTime, cfg.IKERandTime = l.IKERekey, l.IKEReauth, l.IKEOver, l.IKERand
	cfg.ChildRekeyTime, cfg.ChildLifeTime, cfg.ChildRandTime = l.ChildRekey, l.ChildLife, l.ChildRand
}

// maxLifetime bounds every lifetime key, far beyond any sensible value,
// so that the stack's sums (life time 110 % of rekey time, hard lifetime
// soft time plus over time) cannot overflow.
const maxLifetime = 365 * 24 * time.Hour

// lifetime is one lifetime key as read: absent, 0 (off) or a duration.
type lifetime struct {
	key string
	v   *Duration
}

// set reports whether the key is present and not 0.
func (l lifetime) set() bool { return l.v != nil && *l.v > 0 }

// stack returns the value in ike.Config's terms.
func (l lifetime) stack() time.Duration {
	switch {
	case l.v == nil:
		return 0
	case *l.v == 0:
		return -1
	}
	return time.Duration(*l.v)
}

// effective is the duration the stack will use (absent: def), 0 for off.
func (l lifetime) effective(def time.Duration) time.Duration {
	switch {
	case l.v == nil:
		return def
	case *l.v == 0:
		return 0
	}
	return time.Duration(*l.v)
}

// lifetimes validates a tunnel's lifetime keys (p is its path) against
// each other, with the stack's defaults for the absent ones, so that a
// combination the stack would refuse or silently ignore fails at load.
func (c *Config) lifetimes(p string, t Tunnel) (Lifetimes, error) {
	rekey, life, rand := lifetime{"rekey_time", t.RekeyTime}, lifetime{"life_time", t.LifeTime}, lifetime{"rand_time", t.RandTime}
	ikeRekey, reauth := lifetime{"ike_rekey_time", t.IKERekeyTime}, lifetime{"reauth_time", t.ReauthTime}
	over, ikeRand := lifetime{"over_time", t.OverTime}, lifetime{"ike_rand_time", t.IKERandTime}
	for _, l := range []lifetime{rekey, life, rand, ikeRekey, reauth, over, ikeRand} {
		if l.v != nil && time.Duration(*l.v) > maxLifetime {
			return Lifetimes{}, c.fail(p+"."+l.key, "%s %v is above the maximum %v", l.key, time.Duration(*l.v), maxLifetime)
		}
	}
	out := Lifetimes{
		IKERekey: ikeRekey.stack(), IKEReauth: reauth.stack(), IKEOver: over.stack(), IKERand: ikeRand.stack(),
		ChildRekey: rekey.stack(), ChildLife: life.stack(), ChildRand: rand.stack(),
	}
	// Child SA: the hard lifetime must come after the rekey, and the
	// jitter must leave part of the rekey time.
	cr := rekey.effective(ike.DefaultChildRekeyTime)
	if life.set() && cr > 0 && time.Duration(*life.v) <= cr {
		return out, c.fail(p+".life_time", "life_time %v must be above rekey_time %v%s", time.Duration(*life.v), cr, defaultNote(rekey))
	}
	if rand.set() {
		if cr == 0 {
			return out, c.fail(p+".rand_time", "rand_time needs a rekey_time (rekey_time is 0: off)")
		}
		if time.Duration(*rand.v) >= cr {
			return out, c.fail(p+".rand_time", "rand_time %v must be below rekey_time %v%s", time.Duration(*rand.v), cr, defaultNote(rekey))
		}
	}
	// IKE SA: over_time and ike_rand_time act on the soft lifetimes.
	soft := max(ikeRekey.effective(ike.DefaultIKERekeyTime), reauth.effective(0))
	for _, l := range []lifetime{over, ikeRand} {
		if l.set() && soft == 0 {
			return out, c.fail(p+"."+l.key, "%s needs ike_rekey_time or reauth_time (both are off)", l.key)
		}
	}
	if ikeRand.set() {
		// The stack jitters each soft time on its own: the smaller one
		// must keep part of its time.
		for _, l := range []struct {
			lt  lifetime
			def time.Duration
		}{{ikeRekey, ike.DefaultIKERekeyTime}, {reauth, 0}} {
			if d := l.lt.effective(l.def); d > 0 && time.Duration(*ikeRand.v) >= d {
				return out, c.fail(p+".ike_rand_time", "ike_rand_time %v must be below %s %v%s", time.Duration(*ikeRand.v), l.lt.key, d, defaultNote(l.lt))
			}
		}
	}
	return out, nil
}

// defaultNote marks a value the file leaves at its default.
func defaultNote(l lifetime) string {
	if l.v == nil {
		return " (the default)"
	}
	return ""
}
