package mdns

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const testID = "8b2e4c1a-1f0e-4d3c-9a7b-6c5d4e3f2a10"

func testRecord() Record {
	return Record{ServerID: testID, Name: "server_1", Cluster: "blue", Port: 29015, DriverPort: 28015,
		Addrs: []netip.Addr{netip.MustParseAddr("10.213.0.2"), netip.MustParseAddr("fd00::2")}, Agent: "rethinkdb-agent dev"}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	for _, secret := range []string{"", "s3cret"} {
		txt, err := testRecord().Encode([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseTXT(txt)
		if err != nil {
			t.Fatalf("ParseTXT(%q): %v", txt, err)
		}
		if (got.Signature != "") != (secret != "") {
			t.Errorf("secret %q: signature %q", secret, got.Signature)
		}
		if secret != "" {
			if err := got.Verify([]byte(secret)); err != nil {
				t.Errorf("Verify: %v", err)
			}
		}
		got.Signature, got.signed = "", nil
		if !reflect.DeepEqual(got, testRecord()) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, testRecord())
		}
	}
}

func TestVerify(t *testing.T) {
	signed, _ := testRecord().Encode([]byte("right"))
	unsigned, _ := testRecord().Encode(nil)
	replace := func(txt []string, from, to string) []string {
		out := append([]string(nil), txt...)
		for i := range out {
			out[i] = strings.Replace(out[i], from, to, 1)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		txt  []string
		want error
	}{
		{"good", signed, nil},
		{"unsigned", unsigned, ErrUnsigned},
		{"other secret", func() []string { s, _ := testRecord().Encode([]byte("wrong")); return s }(), ErrBadSignature},
		{"address changed", replace(signed, "10.213.0.2", "10.213.0.9"), ErrBadSignature},
		{"port changed", replace(signed, "port=29015", "port=29016"), ErrBadSignature},
		{"cluster changed", replace(signed, "cluster=blue", "cluster=red"), ErrBadSignature},
		{"unknown key added", append(append([]string(nil), signed...), "extra=1"), ErrBadSignature},
		{"key case changed", replace(signed, "port=", "PORT="), ErrBadSignature},
		{"entries reordered", append([]string{signed[len(signed)-1]}, signed[:len(signed)-1]...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseTXT(tc.txt)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify([]byte("right")); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseTXTErrorsNameTheField(t *testing.T) {
	good := map[string]string{"txtvers": "1", "id": testID, "port": "29015", "addrs": "10.0.0.1"}
	build := func(change map[string]string, extra ...string) []string {
		var out []string
		for _, k := range []string{"txtvers", "id", "port", "addrs"} {
			v, ok := change[k]
			if !ok {
				v = good[k]
			}
			if v != "<absent>" {
				out = append(out, k+"="+v)
			}
		}
		return append(out, extra...)
	}
	for _, tc := range []struct {
		name  string
		txt   []string
		field string
	}{
		{"no txtvers", build(map[string]string{"txtvers": "<absent>"}), "txtvers"},
		{"txtvers 2", build(map[string]string{"txtvers": "2"}), "txtvers"},
		{"no id", build(map[string]string{"id": "<absent>"}), "id"},
		{"id not uuid", build(map[string]string{"id": "server_1"}), "id"},
		{"no port", build(map[string]string{"port": "<absent>"}), "port"},
		{"port zero", build(map[string]string{"port": "0"}), "port"},
		{"port too big", build(map[string]string{"port": "65536"}), "port"},
		{"port with plus", build(map[string]string{"port": "+29015"}), "port"},
		{"port not a number", build(map[string]string{"port": "x"}), "port"},
		{"no addrs", build(map[string]string{"addrs": "<absent>"}), "addrs"},
		{"empty addrs", build(map[string]string{"addrs": ""}), "addrs"},
		{"addr is a name", build(map[string]string{"addrs": "node1"}), "addrs"},
		{"addr with zone", build(map[string]string{"addrs": "fe80::1%eth0"}), "addrs"},
		{"addr unspecified", build(map[string]string{"addrs": "0.0.0.0"}), "addrs"},
		{"addr multicast", build(map[string]string{"addrs": "224.0.0.251"}), "addrs"},
		{"addr twice", build(map[string]string{"addrs": "10.0.0.1,10.0.0.1"}), "addrs"},
		{"addr not canonical", build(map[string]string{"addrs": "010.0.0.1"}), "addrs"},
		{"driver port bad", build(nil, "driver=70000"), "driver"},
		{"cluster empty", build(nil, "cluster="), "cluster"},
		{"cluster control char", build(nil, "cluster=a\nb"), "cluster"},
		{"name not utf-8", build(nil, "name=\xff"), "name"},
		{"sig short", build(nil, "sig=abcd"), "sig"},
		{"sig not hex", build(nil, "sig="+strings.Repeat("zz", 32)), "sig"},
		{"id twice", build(nil, "ID="+testID), "id"},
		{"known key without value", build(nil, "cluster"), "cluster"},
		{"entry without key", build(nil, "=x"), "=x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTXT(tc.txt)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseTXT(%q) = %v, want a FieldError", tc.txt, err)
			}
			if fe.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestParseTXTLenient(t *testing.T) {
	r, err := ParseTXT([]string{"", "TxtVers=1", "ID=" + strings.ToUpper(testID), "port=29015", "addrs=10.0.0.1", "future=yes", "flag"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ServerID != testID || r.Port != 29015 || len(r.Addrs) != 1 {
		t.Errorf("got %+v", r)
	}
}

func TestEncodeTooLong(t *testing.T) {
	r := testRecord()
	r.Cluster = strings.Repeat("c", 300)
	_, err := r.Encode(nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "cluster" {
		t.Errorf("Encode = %v, want a FieldError on cluster", err)
	}
}

// FuzzParseTXT: ParseTXT never panics, and what it accepts re-encodes to
// an equal record.
func FuzzParseTXT(f *testing.F) {
	good, _ := testRecord().Encode([]byte("k"))
	f.Add(strings.Join(good, "\x00"))
	f.Add("txtvers=1\x00id=" + testID + "\x00port=1\x00addrs=::1,1.2.3.4")
	f.Add("txtvers=1\x00id=" + testID + "\x00port=1\x00addrs=1.2.3.4\x00sig=" + strings.Repeat("0", 64))
	f.Add("=\x00==\x00id\x00")
	f.Add("addrs=1.2.3.4,\x00port=00029015")
	f.Add("cluster=\xc3\x28")
	f.Fuzz(func(t *testing.T, joined string) {
		txt := strings.Split(joined, "\x00")
		r, err := ParseTXT(txt)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		_ = r.Verify([]byte("k"))
		again, err := r.Encode(nil)
		if err != nil {
			return // a value too long for one TXT string after all
		}
		r2, err := ParseTXT(again)
		if err != nil {
			t.Fatalf("re-encoded %q does not parse: %v", again, err)
		}
		r.Signature, r.signed, r2.signed = "", nil, nil
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", r2, r)
		}
	})
}
