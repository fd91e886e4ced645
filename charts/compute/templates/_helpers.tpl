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
TESSERA_RUNNER_IDLE_SECONDS: {{ .Values.executor.runnerIdleSeconds | quote }}
{{- end -}}
