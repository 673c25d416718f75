//! A component exporting an unrelated world, for the "wrong world" tests.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export hello: func() -> string;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn hello() -> String {
        "hello".into()
    }
}

export!(Other);
