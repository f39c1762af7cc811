package tasktide

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Func adapts a typed function to a HandlerFunc: its argument is decoded from the task's
// arguments and its result encoded as JSON.
//
// When In is a struct, keyword arguments fill its fields by JSON name, and positional arguments
// fill its fields in declaration order (a single positional JSON object, with no keyword
// arguments, is the struct itself); an unknown name, too many arguments or a value of the wrong
// type fails the task with tasktide.BadArguments. Any other In is the one positional argument.
//
//	type AddArgs struct{ X, Y int }
//	worker.Register("shop.add", tasktide.Func(func(ctx context.Context, a AddArgs) (int, error) { return a.X + a.Y, nil }))
//	// runs shop.add(1, 2), shop.add(x=1, y=2) (fields match case-insensitively) and shop.add({"X": 1, "Y": 2})
func Func[In, Out any](fn func(context.Context, In) (Out, error)) HandlerFunc {
	return func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		var in In
		if err := decodeInto(&in, args, kwargs); err != nil {
			return nil, err
		}
		return fn(ctx, in)
	}
}

// Func2 adapts a function of two positional arguments.
func Func2[A, B, Out any](fn func(context.Context, A, B) (Out, error)) HandlerFunc {
	return func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		var a A
		var b B
		if err := decodePositional(args, kwargs, &a, &b); err != nil {
			return nil, err
		}
		return fn(ctx, a, b)
	}
}

// Func3 adapts a function of three positional arguments.
func Func3[A, B, C, Out any](fn func(context.Context, A, B, C) (Out, error)) HandlerFunc {
	return func(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
		var a A
		var b B
		var c C
		if err := decodePositional(args, kwargs, &a, &b, &c); err != nil {
			return nil, err
		}
		return fn(ctx, a, b, c)
	}
}

func badArguments(format string, a ...any) error {
	return NewError("tasktide.BadArguments", fmt.Sprintf(format, a...))
}

func decodePositional(args []json.RawMessage, kwargs map[string]json.RawMessage, dst ...any) error {
	if len(kwargs) > 0 {
		return badArguments("this task takes positional arguments only, got keyword arguments %s", names(kwargs))
	}
	return DecodeArgs(args, dst...)
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func decodeInto(dst any, args []json.RawMessage, kwargs map[string]json.RawMessage) error {
	t := reflect.TypeOf(dst).Elem()
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshaler) {
		if err := decodePositional(args, kwargs, dst); err != nil {
			return err
		}
		return nil
	}
	if len(args) == 1 && len(kwargs) == 0 && bytes.HasPrefix(bytes.TrimSpace(args[0]), []byte("{")) {
		return strictDecode(args[0], dst)
	}
	fields := fieldNames(t)
	if len(args) > len(fields) {
		return badArguments("expected at most %d arguments, got %d", len(fields), len(args))
	}
	object := make(map[string]json.RawMessage, len(args)+len(kwargs))
	for i, a := range args {
		object[fields[i]] = a
	}
	for k, v := range kwargs {
		if _, twice := object[k]; twice {
			return badArguments("argument %q given twice", k)
		}
		object[k] = v
	}
	b, err := json.Marshal(object)
	if err != nil {
		return badArguments("%v", err)
	}
	return strictDecode(b, dst)
}

func strictDecode(b []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badArguments("%v", err)
	}
	return nil
}

// fieldNames are the JSON names of a struct's exported fields, in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func names(m map[string]json.RawMessage) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}
