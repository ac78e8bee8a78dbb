package phone

import (
	"errors"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, country, want string
	}{
		{"+12282001234", "", "+12282001234"},
		{"12282001234", "", "+12282001234"},
		{"(228) 200-1234", "US", "+12282001234"},
		{"228.200.1234", "US", "+12282001234"},
		{"tel:+1-228-200-1234", "", "+12282001234"},
		{"sip:+12282001234@carrier.example;user=phone", "", "+12282001234"},
		{"sips:12282001234@127.0.0.1:5061", "", "+12282001234"},
		{"020 7946 0018", "GB", "+442079460018"},
		{"+44 20 7946 0018", "US", "+442079460018"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in, tt.country)
		if err != nil {
			t.Errorf("Normalize(%q, %q): %v", tt.in, tt.country, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Normalize(%q, %q) = %q, want %q", tt.in, tt.country, got, tt.want)
		}
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, in := range []string{"", "+", "abc", "+1228abc1234", "+1234", "12", "+1999999999999999", "sip:@host", "++12282001234", "+1 228 200 1234 ext 5"} {
		if got, err := Normalize(in, "US"); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	info, err := Describe("+12282001234")
	if err != nil {
		t.Fatal(err)
	}
	if info.Country != "US" || info.Region != "Mississippi" || info.Type != "local" {
		t.Fatalf("Describe = %+v", info)
	}
	tf, err := Describe("+18005550100")
	if err != nil {
		t.Fatal(err)
	}
	if tf.Type != "toll_free" {
		t.Fatalf("toll free type = %q", tf.Type)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"+12282001234", "tel:+1-228-200-1234", "sip:1228@h;x", "(228) 200-1234", "", "+", "\x00", "sips:@"} {
		f.Add(s, "US")
	}
	f.Fuzz(func(t *testing.T, s, country string) {
		got, err := Normalize(s, country)
		if err != nil {
			return
		}
		// A normalised number normalises to itself, from any default country.
		again, err := Normalize(got, "")
		if err != nil || again != got {
			t.Fatalf("Normalize(%q)=%q, renormalised %q, %v", s, got, again, err)
		}
	})
}

func TestIsE164(t *testing.T) {
	for s, want := range map[string]bool{
		"+12282001234":      true,
		"+442079460018":     true,
		"+123":              true,
		"+12":               false, // too short
		"+1234567890123456": false, // 16 digits
		"+012282001234":     false,
		"12282001234":       false,
		"+1228 200 1234":    false,
		"+1228200123x":      false,
		"":                  false,
		"+":                 false,
	} {
		if got := IsE164(s); got != want {
			t.Errorf("IsE164(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in, country, want string
		ok                bool
	}{
		{"+12282001234", "", "+12282001234", true},
		{"12282001234", "", "+12282001234", true},
		{"(228) 200-1234", "US", "+12282001234", true},
		{"sip:+12282001234@carrier.example", "", "+12282001234", true},
		{"", "US", "", false},
		{"bob", "US", "", false},
	} {
		got, ok := Parse(tt.in, tt.country)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Parse(%q, %q) = %q, %v; want %q, %v", tt.in, tt.country, got, ok, tt.want, tt.ok)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Parse("+12282001234", "US") }); n != 0 {
		t.Errorf("Parse of an E.164 string allocates %v times", n)
	}
}
