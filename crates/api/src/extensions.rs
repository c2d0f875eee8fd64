//! The API extensions drover implements. `GET /1.0` lists exactly these; LXD's clients
//! check them before using a feature (`lxc list` needs `api_filtering`, and without
//! `instances` the 5.0.2 client falls back to `/1.0/containers` URLs).

/// Every extension drover implements, in the order LXD introduced them.
pub const API_EXTENSIONS: &[&str] = &[
    "container_host_shutdown_timeout",
    "etag",
    "patch",
    "container_exec_signal_handling",
    "container_image_properties",
    // `/1.0/instances/{name}/files`: `DELETE`, `X-LXD-write: append`, symlinks and
    // directories (`lxc file delete|push|pull|mkdir`, pylxd's `instance.files`).
    "file_delete",
    "file_append",
    "file_symlinks",
    "directory_manipulation",
    "storage",
    // `GET /1.0/networks[/{name}]`: the member's interfaces, unmanaged (`lxc network list`).
    "network",
    "entity_description",
    "container_full",
    "container_backup",
    // `GET /1.0/resources` and `/1.0/storage-pools/{name}/resources` (`lxc info
    // --resources`, `lxc storage info`): CPU, memory, the machine, pool usage.
    "resources",
    // The sockets/cores/threads shape of `cpu` in `/1.0/resources`.
    "resources_v2",
    "operation_description",
    "event_lifecycle",
    "instances",
    "api_filtering",
    "image_create_aliases",
    // `instance_only` in a copy or move source (`lxc copy --instance-only`): drover keeps no
    // snapshots, so every copy is an instance-only one.
    "container_only_migration",
    "container_exec_recording",
    "container_exec_user_group_cwd",
    // `GET /1.0/projects[/{name}]`: the `default` project only (`lxc project list`).
    "projects",
    // `GET`/`POST /1.0/instances/{name}/console` (virtual machines' serial console).
    "console",
    // `POST /1.0/certificates` with `token: true` (`lxc config trust add` needs it).
    "certificate_token",
    // `GET`/`PUT /1.0/cluster`, `GET /1.0/cluster/members[/{name}]`.
    "clustering",
    // `PUT /1.0/cluster` with a cluster address (join).
    "clustering_join",
    // `POST /1.0/cluster/members`: join tokens.
    "clustering_join_token",
    // `POST /1.0/cluster/members/{name}/state` (evacuate, restore).
    "clustering_evacuation",
    // `mode` in that request (`auto`, `live-migrate`, `migrate`, `stop`, `force-stop`).
    "clustering_evacuation_live",
    // drover: `dry_run` in that request, and the `evacuation_plan` table in its operation.
    "cluster_evacuation_plan",
    // drover: `parallel` and `parallel_per_target` in that request.
    "cluster_evacuation_parallel",
    // `PUT`/`PATCH /1.0/cluster/members/{name}` (`lxc cluster edit`, `group assign`).
    "clustering_edit_roles",
    // `failure_domain` in that request.
    "clustering_failure_domains",
    // `description` in that request.
    "clustering_description",
    // `config` in that request (`scheduler.instance`, `user.*`).
    "clustering_config",
    // `/1.0/cluster/groups`, `groups` of a member, `--target @group`.
    "clustering_groups",
    // `GET /1.0/storage-pools/{name}/volumes/{type}/{volume}/state` (`lxc storage volume
    // info`): the space the volume uses.
    "storage_volume_state",
    // `GET .../volumes/{type}/{volume}/snapshots`: always empty (`lxc storage volume info`).
    "storage_api_volume_snapshots",
    // `POST /1.0/instances` with `source.type: "copy"` in a cluster: the copy is made on
    // the source's member (`lxc copy c1 c2` copies there instead of migrating).
    "cluster_internal_copy",
    // `GET /1.0/warnings`: always empty (`lxc warning list`).
    "warnings",
    // `GET /1.0/instances?all-projects=true` (`lxc list --all-projects`): every instance,
    // each with its `project` (drover has the `default` project only).
    "instance_all_projects",
];
