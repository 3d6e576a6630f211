package settings

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// A Field is one setting, bound to a Settings value.
type Field struct {
	// Flag is its command-line flag's name, "check-timeout"; Env its
	// environment variable, "TOLLGATE_CHECK_TIMEOUT"; Key its key in the
	// config file's server section, "check_timeout", or "" when the file
	// cannot set it.
	Flag, Env, Key string
	// Path: the value is a file path (relative to the config file there).
	Path bool
	// FilePositive: the file may only set a positive number; Hint is added
	// to that error.
	FilePositive bool
	Hint         string
	// Group is the name of the field's group in Settings ("Redis", "TLS"),
	// "" for a top-level setting.
	Group string
	// Value reads and sets the setting in the Settings Fields was given.
	Value pflag.Value
	usage string
}

// Fields returns the table of every setting of s, in the order of the
// struct, each bound to s.
func Fields(s *Settings) []Field {
	var fields []Field
	var walk func(v reflect.Value, group string)
	walk = func(v reflect.Value, group string) {
		t := v.Type()
		for i := range t.NumField() {
			sf, fv := t.Field(i), v.Field(i)
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Duration]() {
				walk(fv, sf.Name)
				continue
			}
			name := sf.Tag.Get("flag")
			if name == "" {
				panic(fmt.Sprintf("settings: field %s has no flag tag", sf.Name)) // a programming error, caught by the tests
			}
			f := Field{
				Flag:         name,
				Env:          EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_")),
				Key:          strings.ReplaceAll(name, "-", "_"),
				Path:         sf.Tag.Get("path") == "true",
				FilePositive: sf.Tag.Get("file") == "positive",
				Hint:         sf.Tag.Get("hint"),
				Group:        group,
				Value:        valueOf(fv.Addr().Interface()),
				usage:        sf.Tag.Get("usage"),
			}
			if sf.Tag.Get("file") == "-" {
				f.Key = ""
			}
			fields = append(fields, f)
		}
	}
	walk(reflect.ValueOf(s).Elem(), "")
	return fields
}

// valueOf returns a pflag.Value over the setting at p, with pflag's own
// parsing for its type.
func valueOf(p any) pflag.Value {
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	switch p := p.(type) {
	case *string:
		fs.StringVar(p, "v", *p, "")
	case *[]string:
		fs.StringSliceVar(p, "v", *p, "")
	case *bool:
		fs.BoolVar(p, "v", *p, "")
	case *int:
		fs.IntVar(p, "v", *p, "")
	case *time.Duration:
		fs.DurationVar(p, "v", *p, "")
	case *map[string]string:
		fs.StringToStringVar(p, "v", *p, "")
	default:
		panic(fmt.Sprintf("settings: no flag type for %T", p)) // a programming error, caught by the tests
	}
	return fs.Lookup("v").Value
}

// AddFlags registers a flag for every setting of s, bound to s, with s's
// current values as defaults (start from Default); with groups, only for
// the settings of those groups ("Redis", "TLS": the store's, for tools).
func (s *Settings) AddFlags(f *pflag.FlagSet, groups ...string) {
	for _, fl := range Fields(s) {
		if len(groups) > 0 && !slices.Contains(groups, fl.Group) {
			continue
		}
		flag := f.VarPF(fl.Value, fl.Flag, "", fl.usage)
		flag.DefValue = fl.Value.String()
		if fl.Value.Type() == "bool" {
			flag.NoOptDefVal = "true"
		}
	}
}

// ApplyEnv sets each flag of f not given on the command line from its
// environment variable (Field.Env), if lookup finds it. A list is
// comma-separated.
func ApplyEnv(f *pflag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		return nil
	}
	var err error
	f.VisitAll(func(fl *pflag.Flag) {
		if err != nil || fl.Changed || fl.Name == "help" {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if serr := f.Set(fl.Name, v); serr != nil {
				err = fmt.Errorf("invalid %s %q: %w", name, v, serr)
			}
		}
	})
	return err
}

// A File is the settings of a config file's server section, as FileValue
// entries in file order.
type File []FileValue

// A FileValue is one key of the server section: its value in flag syntax
// (a list comma-separated, a map as k=v pairs) and its line.
type FileValue struct {
	Key, Value string
	Line       int
	// ItemLines are the lines of a list's items.
	ItemLines []int
}

// Line returns the line of key in f, or of its item (item ≥ 0); 0 when
// unknown.
func (f File) Line(key string, item int) int {
	for _, v := range f {
		if v.Key == key {
			if item >= 0 && item < len(v.ItemLines) {
				return v.ItemLines[item]
			}
			return v.Line
		}
	}
	return 0
}

// ApplyFile sets each flag of f given neither on the command line nor in
// the environment from file. file must have passed CheckFile.
func ApplyFile(f *pflag.FlagSet, file File) error {
	for _, v := range file {
		flag := strings.ReplaceAll(v.Key, "_", "-")
		if f.Changed(flag) {
			continue
		}
		if err := f.Set(flag, v.Value); err != nil {
			return fmt.Errorf("--config: server: %s %q: %w", v.Key, v.Value, err)
		}
	}
	return nil
}

// A FileError is a problem of a server section: the key and, for a list,
// the item (else -1) at fault, and the message, with settings named by
// their keys.
type FileError struct {
	Key  string
	Item int
	Msg  string
}

func (e *FileError) Error() string { return "server: " + e.Msg }

// CheckFile checks a server section: known keys, values that parse, the
// file's own rules (file:"positive") and Validate over Default with the
// file applied, except for settings that want another one set, which the
// command line or the environment may still give. Relative paths are resolved against dir ("" leaves them).
// It returns the section with those paths resolved.
func CheckFile(file File, dir string) (File, error) {
	s := Default()
	fields := Fields(&s)
	key := func(flag string) string { return strings.ReplaceAll(flag, "-", "_") }
	out := slices.Clone(file)
	for i, v := range out {
		j := slices.IndexFunc(fields, func(f Field) bool { return f.Key != "" && f.Key == v.Key })
		if j < 0 {
			return nil, &FileError{Key: v.Key, Item: -1, Msg: fmt.Sprintf("unknown setting %q", v.Key)}
		}
		fl := fields[j]
		if fl.Path && dir != "" && v.Value != "" && !isAbs(v.Value) {
			out[i].Value = joinPath(dir, v.Value)
		}
		if err := fl.Value.Set(out[i].Value); err != nil {
			return nil, &FileError{Key: v.Key, Item: -1, Msg: fmt.Sprintf("%s %q is not %s", v.Key, v.Value, typeName(fl.Value.Type()))}
		}
		if fl.FilePositive && !positive(fl.Value) {
			msg := fmt.Sprintf("%s %s: must be positive", v.Key, fl.Value.String())
			if fl.Hint != "" {
				msg += " (" + fl.Hint + ")"
			}
			return nil, &FileError{Key: v.Key, Item: -1, Msg: msg}
		}
	}
	if e := s.validate(true); e != nil {
		return nil, &FileError{Key: key(e.Flag), Item: e.Item, Msg: e.In(key)}
	}
	return out, nil
}

func typeName(t string) string {
	switch t {
	case "duration":
		return `a Go duration such as "100ms"`
	case "int":
		return "an integer"
	case "bool":
		return "true or false"
	}
	return "a " + t
}

// positive reports whether a number's value is above zero.
func positive(v pflag.Value) bool {
	s := v.String()
	if d, err := time.ParseDuration(s); err == nil {
		return d > 0
	}
	return s != "" && s != "0" && !strings.HasPrefix(s, "-")
}
