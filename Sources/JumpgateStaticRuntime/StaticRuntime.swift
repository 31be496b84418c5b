/// This module holds no code: it carries the linker settings (Package.swift) that put the Swift runtime and
/// the parts of Foundation the executables use into `jumpgate` and `session-manager-plugin`. Only they
/// depend on it, so the test bundle keeps the shared runtime that swift-testing needs.
enum StaticRuntime {}
