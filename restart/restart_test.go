package restart

import (
	"strings"
	"testing"
	"time"
)

func TestFixedDelay(t *testing.T) {
	s := FixedDelay(2, time.Second)
	now := time.Unix(0, 0)
	for i := range 2 {
		if d, ok, _ := s.OnFailure(now); !ok || d != time.Second {
			t.Fatalf("attempt %d: %v %v", i, d, ok)
		}
	}
	if _, ok, reason := s.OnFailure(now); ok || !strings.Contains(reason, "2 attempts") {
		t.Fatalf("third failure: ok=%v %q", ok, reason)
	}
}

func TestFailureRate(t *testing.T) {
	s := FailureRate(2, time.Minute, 10*time.Millisecond)
	t0 := time.Unix(0, 0)
	for _, at := range []time.Duration{0, 10 * time.Second} {
		if _, ok, _ := s.OnFailure(t0.Add(at)); !ok {
			t.Fatalf("failure at %s refused", at)
		}
	}
	// Three within a minute: fail.
	if _, ok, _ := s.OnFailure(t0.Add(20 * time.Second)); ok {
		t.Fatal("third failure within the interval allowed")
	}
	// Much later the window has moved on.
	s = FailureRate(2, time.Minute, 0)
	s.OnFailure(t0)
	s.OnFailure(t0.Add(time.Second))
	if _, ok, _ := s.OnFailure(t0.Add(2 * time.Minute)); !ok {
		t.Fatal("failure after the window refused")
	}
}

func TestExponentialDelay(t *testing.T) {
	s := ExponentialDelay(100*time.Millisecond, time.Second, 2, time.Minute, 0)
	t0 := time.Unix(0, 0)
	var got []time.Duration
	for i := range 6 {
		d, ok, _ := s.OnFailure(t0.Add(time.Duration(i) * time.Second))
		if !ok {
			t.Fatal("exponential delay gave up")
		}
		got = append(got, d)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	// A quiet period longer than reset starts over.
	if d, _, _ := s.OnFailure(t0.Add(time.Hour)); d != 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
	j := ExponentialDelay(time.Second, time.Minute, 2, time.Hour, 0.5)
	d, _, _ := j.OnFailure(t0)
	if d > time.Second || d < 500*time.Millisecond {
		t.Fatalf("jittered delay %v outside [0.5s, 1s]", d)
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"none", "fixed-delay", "fixed-delay:attempts=3,delay=2s", "failure-rate:max=3,interval=1m,delay=1s",
		"exponential-delay:initial=1s,max=1m,multiplier=1.5,reset=1h,jitter=0.1",
		"exponential-delay:initial=1s,max=1s,multiplier=1,reset=0s,jitter=1", "fixed-delay:attempts=0,delay=0s",
		"failure-rate:max=1,interval=1ms,delay=0s"} {
		st, err := Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if _, err := Parse(st.String()); err != nil {
			t.Fatalf("String() of %s does not parse back: %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"sometimes":                   "unknown restart strategy",
		"fixed-delay:attempts=x":      `attempts="x"`,
		"fixed-delay:delay=soon":      `delay="soon"`,
		"fixed-delay:tries=3":         `unknown key "tries"`,
		"failure-rate:max":            "not key=value",
		"exponential-delay:jitter=-1": `jitter="-1"`,
		// Values that parse but make no sense.
		"fixed-delay:attempts=-1":                        `attempts="-1" is not a whole number >= 0`,
		"fixed-delay:delay=-1s":                          `delay="-1s" is not a duration >= 0`,
		"fixed-delay:delay=5":                            `delay="5" is not a duration with a unit`,
		"failure-rate:max=0":                             `max="0" is not a whole number >= 1`,
		"failure-rate:interval=0s":                       `interval="0s" is not a duration > 0`,
		"failure-rate:interval=-1m":                      `interval="-1m" is not a duration > 0`,
		"failure-rate:delay=-1s":                         `delay="-1s"`,
		"exponential-delay:initial=0s,max=0s":            `initial="0s" is not a duration > 0`,
		"exponential-delay:initial=-1s":                  `initial="-1s" is not a duration > 0`,
		"exponential-delay:initial=1s,max=0s":            `max="0s" is not a duration > 0`,
		"exponential-delay:initial=10s,max=1s":           `max=1s is less than initial=10s`,
		"exponential-delay:initial=10m":                  `max=5m0s (the default) is less than initial=10m0s`,
		"exponential-delay:multiplier=0.5":               `multiplier="0.5" is not a number >= 1`,
		"exponential-delay:multiplier=NaN":               `multiplier="NaN"`,
		"exponential-delay:multiplier=+Inf":              `multiplier="+Inf"`,
		"exponential-delay:jitter=1.5":                   `jitter="1.5" is not a number from 0 to 1`,
		"exponential-delay:reset=-1h":                    `reset="-1h"`,
		"exponential-delay:initial=1s,max=2s,jitter=NaN": `jitter="NaN"`,
	} {
		if _, err := Parse(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want error with %q, got %v", s, want, err)
		}
	}
}
