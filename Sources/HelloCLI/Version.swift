/// The version of hellod and hello: the one place it is written. `hellod --version` and
/// `hello --version` print it; the Makefile reads it from this line (`make version`), and
/// so does anything packaging them. Keep the line's shape: `package let hellodVersion = "X"`.
package let hellodVersion = "2.1.0"
