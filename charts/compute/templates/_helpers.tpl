{{/*
The compute chart's own helpers. Names, labels, security contexts, probes and the shared manifests come from the
tessera-common library chart (charts/tessera-common).
*/}}

{{/* True (as the string "true") when tasks run as Kubernetes pods; validates executor.type. */}}
{{- define "compute.kubernetesExecutor" -}}
{{- if not (has .Values.executor.type (list "local" "kubernetes")) -}}
{{- fail (printf "executor.type must be local or kubernetes, not %q" .Values.executor.type) -}}
{{- end -}}
{{- if eq .Values.executor.type "kubernetes" -}}true{{- end -}}
{{- end -}}

{{/* Settings only compute reads; added to the ConfigMap. */}}
{{- define "compute.config" -}}
TESSERA_GRPC_ADDR: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
TESSERA_EXECUTOR: {{ .Values.executor.type | quote }}
TESSERA_EXECUTION_SLOTS: {{ .Values.executor.slots | quote }}
TESSERA_WORK_DIR: {{ .Values.workDir.mountPath | quote }}
TESSERA_TASK_TIMEOUT: {{ .Values.executor.limits.timeoutSeconds | quote }}
TESSERA_TASK_CPU_SECONDS: {{ .Values.executor.limits.cpuSeconds | quote }}
TESSERA_TASK_MEMORY_MB: {{ .Values.executor.limits.memoryMb | quote }}
TESSERA_TASK_PROCESSES: {{ .Values.executor.limits.processes | quote }}
TESSERA_TASK_FILE_MB: {{ .Values.executor.limits.fileMb | quote }}
TESSERA_TASK_TMP_MB: {{ .Values.executor.limits.tmpMb | quote }}
TESSERA_TASK_NICE: {{ .Values.executor.limits.nice | quote }}
TESSERA_RUNNER_IDLE_SECONDS: {{ .Values.executor.runnerIdleSeconds | quote }}
TESSERA_IDLE_RUNNERS: {{ .Values.executor.idleRunners | quote }}
TESSERA_TASK_THREADS: {{ .Values.executor.taskThreads | quote }}
{{- if eq (include "compute.kubernetesExecutor" .) "true" }}
{{- $k := .Values.executor.kubernetes }}
TESSERA_K8S_WORK_CLAIM: {{ required "executor.kubernetes.workClaim is required when executor.type is kubernetes" $k.workClaim | quote }}
TESSERA_K8S_TASK_UID: {{ $k.taskUid | quote }}
TESSERA_K8S_TASK_GID: {{ $k.taskGid | quote }}
TESSERA_K8S_CPU_REQUEST: {{ $k.taskResources.requests.cpu | quote }}
TESSERA_K8S_MEMORY_REQUEST: {{ $k.taskResources.requests.memory | quote }}
TESSERA_K8S_CPU_LIMIT: {{ $k.taskResources.limits.cpu | quote }}
TESSERA_K8S_MEMORY_LIMIT: {{ $k.taskResources.limits.memory | quote }}
TESSERA_K8S_GPUS: {{ $k.gpus | quote }}
TESSERA_K8S_NODE_SELECTOR: {{ include "compute.pairs" $k.nodeSelector | quote }}
TESSERA_K8S_TOLERATIONS: {{ $k.tolerations | toJson | quote }}
TESSERA_K8S_PULL_SECRET: {{ $k.pullSecret | quote }}
TESSERA_K8S_REGISTRY: {{ required "executor.kubernetes.registry is required when executor.type is kubernetes" $k.registry | quote }}
TESSERA_K8S_IMAGE_PREFIX: {{ $k.imagePrefix | quote }}
TESSERA_K8S_KANIKO_IMAGE: {{ $k.kanikoImage | quote }}
TESSERA_K8S_REGISTRY_SECRET: {{ $k.registrySecret | quote }}
TESSERA_K8S_REGISTRY_INSECURE: {{ $k.registryInsecure | quote }}
TESSERA_K8S_GRACE_SECONDS: {{ $k.graceSeconds | quote }}
{{- end }}
{{- end -}}

{{/* A map as `key=value,key=value` (sorted). */}}
{{- define "compute.pairs" -}}
{{- $pairs := list -}}
{{- range $key, $value := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
