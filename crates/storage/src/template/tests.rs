//! Unit tests of the template renderer and of `apply_templates`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn ctx() -> TemplateContext {
    TemplateContext {
        instance: InstanceMeta {
            name: "c1".into(),
            architecture: "x86_64".into(),
            privileged: false,
            ephemeral: true,
        },
        config: BTreeMap::from([
            ("user.hostname".into(), "web\n".into()),
            ("limits.memory".into(), "256MiB".into()),
            ("user.empty".into(), String::new()),
        ]),
        devices: BTreeMap::from([(
            "root".into(),
            BTreeMap::from([
                ("path".into(), "/".into()),
                ("pool".into(), "default".into()),
            ]),
        )]),
        file_owner: None,
    }
}

fn render(src: &str) -> String {
    let props = BTreeMap::from([("greeting".into(), "hello".into())]);
    Template::parse(src).unwrap().render(&ctx().variables(
        TemplateTrigger::Create,
        "/etc/x",
        &props,
    ))
}

#[test]
fn text_passes_through() {
    assert_eq!(
        render("plain\ntext {not a tag}\n"),
        "plain\ntext {not a tag}\n"
    );
}

#[test]
fn variables_and_dotted_paths() {
    assert_eq!(render("{{ container.name }}"), "c1");
    assert_eq!(
        render("{{instance.name}}/{{ instance.architecture }}"),
        "c1/x86_64"
    );
    assert_eq!(
        render("{{ instance.privileged }} {{ instance.ephemeral }}"),
        "false true"
    );
    assert_eq!(render("{{ trigger }} {{ path }}"), "create /etc/x");
    assert_eq!(render("{{ properties.greeting }}"), "hello");
    assert_eq!(render("{{ devices.root.pool }}"), "default");
    assert_eq!(render("{{ config.limits.memory }}"), "256MiB");
}

#[test]
fn unknown_variables_render_empty() {
    assert_eq!(
        render("[{{ nope }}][{{ instance.nope }}][{{ config.x.y }}]"),
        "[][][]"
    );
}

#[test]
fn config_get_with_default() {
    // Present: value with trailing newlines stripped, as LXD does.
    assert_eq!(render(r#"{{ config_get("user.hostname", "") }}"#), "web");
    assert_eq!(
        render(r#"{{ config_get("user.missing", "dflt") }}"#),
        "dflt"
    );
    assert_eq!(render(r#"{{ config_get("user.missing") }}"#), "");
    // Present but empty stays empty (the default is only for missing keys).
    assert_eq!(render(r#"{{ config_get("user.empty", "dflt") }}"#), "");
    assert_eq!(
        render(r#"{{ config.get("limits.memory", "x") }}"#),
        "256MiB"
    );
    assert_eq!(render(r#"{{ config.get('nope', 'x') }}"#), "x");
}

#[test]
fn filters() {
    assert_eq!(render(r#"{{ nope|default:"x" }}"#), "x");
    assert_eq!(render(r#"{{ instance.name | default:"x" | upper }}"#), "C1");
    assert_eq!(render(r#"{{ "MiXed" | lower }}"#), "mixed");
    assert_eq!(
        render(r#"{{ config_get("user.empty", "") | default:"fallback" }}"#),
        "fallback"
    );
    assert_eq!(render(r#"{{ nope | default_if_none:"n" }}"#), "n");
    assert_eq!(render(r#"{{ "abc" | capfirst }}"#), "Abc");
}

#[test]
fn if_else_elif() {
    assert_eq!(
        render("{% if instance.name %}yes{% else %}no{% endif %}"),
        "yes"
    );
    assert_eq!(render("{% if nope %}yes{% else %}no{% endif %}"), "no");
    assert_eq!(render("{% if nope %}yes{% endif %}"), "");
    assert_eq!(
        render(r#"{% if trigger == "create" %}c{% elif trigger == "copy" %}k{% endif %}"#),
        "c"
    );
    assert_eq!(
        render(
            r#"{% if trigger != "create" %}a{% elif path == "/etc/x" %}b{% else %}z{% endif %}"#
        ),
        "b"
    );
    assert_eq!(
        render(r#"{% if instance.privileged == "true" %}p{% else %}u{% endif %}"#),
        "u"
    );
    assert_eq!(
        render(r#"{% if not nope and instance.name or nope %}t{% endif %}"#),
        "t"
    );
    assert_eq!(
        render("{% if instance.name %}{% if nope %}a{% else %}b{% endif %}{% endif %}"),
        "b"
    );
}

#[test]
fn comments_whitespace_control_and_autoescape() {
    assert_eq!(render("a{# hidden #}b"), "ab");
    assert_eq!(render("a  \n{%- if true -%}\n  b\n{%- endif %}"), "ab");
    assert_eq!(
        render("{% autoescape off %}<{{ instance.name }}>{% endautoescape %}"),
        "<c1>"
    );
}

#[test]
fn unsupported_constructs_are_errors() {
    let e = Template::parse("{% for x in devices %}{{ x }}{% endfor %}").unwrap_err();
    assert!(
        matches!(e, TemplateError::UnsupportedTag { ref tag, .. } if tag == "for"),
        "{e}"
    );
    let e = Template::parse("{{ x | wordcount }}").unwrap_err();
    assert!(matches!(e, TemplateError::UnsupportedFilter { .. }), "{e}");
    assert!(Template::parse("{% if x %}never closed").is_err());
    assert!(Template::parse("{{ unclosed").is_err());
    assert!(Template::parse("{% endif %}").is_err());
    assert!(Template::parse("{{ frobnicate(1) }}").is_err());
}

/// What does this test do?
/// - builds a fake unpacked image with three templates (create, start, create_only)
/// - applies the `create` trigger: only create templates are written, with mode 0644
/// - an existing file keeps its mode; a create_only target that exists is untouched
/// - a template path through an absolute symlink stays inside the rootfs
#[test]
fn apply_templates_honours_triggers_modes_and_create_only() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(image.join("templates")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(
        image.join("templates/hostname.tpl"),
        "{{ container.name }}\n",
    )
    .unwrap();
    fs::write(image.join("templates/start.tpl"), "started\n").unwrap();
    fs::write(image.join("templates/once.tpl"), "once\n").unwrap();
    fs::write(rootfs.join("etc/hosts"), "old\n").unwrap();
    fs::set_permissions(rootfs.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(rootfs.join("etc/keep"), "mine\n").unwrap();
    // /etc/link -> /etc/linked: absolute, must resolve inside the rootfs.
    std::os::unix::fs::symlink("/etc/linked", rootfs.join("etc/link")).unwrap();

    let spec = |tpl: &str, when: &[TemplateTrigger], create_only| TemplateSpec {
        when: when.to_vec(),
        template: tpl.into(),
        properties: BTreeMap::new(),
        create_only,
    };
    use TemplateTrigger::*;
    let templates = BTreeMap::from([
        (
            "/etc/hostname".to_owned(),
            spec("hostname.tpl", &[Create, Copy], false),
        ),
        (
            "/etc/hosts".to_owned(),
            spec("hostname.tpl", &[Create], false),
        ),
        (
            "/etc/started".to_owned(),
            spec("start.tpl", &[Start], false),
        ),
        ("/etc/keep".to_owned(), spec("once.tpl", &[Create], true)),
        (
            "/etc/new/once".to_owned(),
            spec("once.tpl", &[Create], true),
        ),
        ("/etc/link".to_owned(), spec("once.tpl", &[Create], false)),
    ]);

    apply_templates(&image, &templates, &rootfs, Create, &ctx()).unwrap();

    assert_eq!(
        fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "c1\n"
    );
    let mode = fs::metadata(rootfs.join("etc/hostname"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644);
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/hosts")).unwrap(),
        "c1\n"
    );
    let mode = fs::metadata(rootfs.join("etc/hosts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600, "existing file keeps its mode");
    assert!(
        !rootfs.join("etc/started").exists(),
        "start template not applied on create"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/keep")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/new/once")).unwrap(),
        "once\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/linked")).unwrap(),
        "once\n"
    );

    apply_templates(&image, &templates, &rootfs, Start, &ctx()).unwrap();
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/started")).unwrap(),
        "started\n"
    );
}

#[test]
fn apply_templates_refuses_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(image.join("templates")).unwrap();
    fs::create_dir_all(&rootfs).unwrap();
    fs::write(image.join("templates/t.tpl"), "x").unwrap();
    // A symlink climbing out with `..` is clamped at the rootfs, like chroot.
    std::os::unix::fs::symlink("../../../outside", rootfs.join("up")).unwrap();
    let one = |path: &str, tpl: &str| {
        BTreeMap::from([(
            path.to_owned(),
            TemplateSpec {
                when: vec![TemplateTrigger::Create],
                template: tpl.into(),
                properties: BTreeMap::new(),
                create_only: false,
            },
        )])
    };
    let apply = |t| apply_templates(&image, &t, &rootfs, TemplateTrigger::Create, &ctx());
    assert!(apply(one("/../etc/x", "t.tpl")).is_err());
    assert!(apply(one("/etc/x", "../t.tpl")).is_err());
    apply(one("/up", "t.tpl")).unwrap();
    assert_eq!(fs::read_to_string(rootfs.join("outside")).unwrap(), "x");
    assert!(!dir.path().join("outside").exists());
}
